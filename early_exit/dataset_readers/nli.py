from typing import Dict, List, Optional, Tuple, Union

from overrides import overrides

from allennlp.data import DatasetReader, Instance
from allennlp.data.fields import Field, LabelField, TextField
from allennlp.data.tokenizers import Token

from early_exit.dataset_readers.line_reader import EarlyExitLineReader


@DatasetReader.register("early_exit_nli")
class EarlyExitNliReader(EarlyExitLineReader):
    """
    Reads natural language inference data, one example per line:
    `label<TAB>premise<TAB>hypothesis`. JSON lines files are read too, one object per line with
    `"premise"`, `"hypothesis"` and `"label"` keys (the label a string or an integer).

    Premise and hypothesis are encoded as one sentence pair with the transformer's special
    tokens, e.g. `[CLS] premise [SEP] hypothesis [SEP]` with token type ids 0 for the first
    segment and 1 for the second for BERT. When the pair is longer than `max_length` wordpieces
    (special tokens included), the longer side is truncated first, one wordpiece at a time
    (the hypothesis when both are equally long), until the pair fits.

    Registered as a `DatasetReader` with name "early_exit_nli".

    Instances have the same fields as allennlp-models' `snli` reader with a pretrained
    transformer tokenizer, so one model can take the output of either:

    - `tokens` (`TextField`): the sentence pair with special tokens,
    - `label` (`LabelField`, namespace `"labels"`): the label as a string, when it is known.

    See `EarlyExitLineReader` for the file formats, error handling and sharding.

    # Parameters

    transformer_model : `str`
        Name of a Hugging Face transformer or path to a local directory with its tokenizer files.
    max_length : `int`, optional (default = `512`)
        Maximum number of wordpieces of an instance, special tokens included.
    encoding : `str`, optional (default = `"utf-8"`)
        Encoding of the data files.
    skip_invalid_lines : `bool`, optional (default = `False`)
        Skip invalid lines (with a warning giving their count) instead of raising a
        `DataFormatError`.
    skip_header : `bool`, optional (default = `False`)
        The first non-blank line of a tab-separated file is a header: skip it. Without this, a
        first line that looks like a header is a `DataFormatError`, never an example.
    tokenizer_kwargs : `Dict[str, Any]`, optional (default = `None`)
        Extra arguments for `AutoTokenizer.from_pretrained`.
    **kwargs
        Passed on to `DatasetReader` (e.g. `max_instances`).
    """

    text_fields = ("premise", "hypothesis")

    # The base class declares `text_to_instance(*inputs)`, which no concrete signature matches,
    # hence no signature check.
    @overrides(check_signature=False)
    def text_to_instance(  # type: ignore
        self, premise: str, hypothesis: str, label: Optional[Union[str, int]] = None
    ) -> Instance:
        """
        # Parameters

        premise : `str`
            The premise.
        hypothesis : `str`
            The hypothesis.
        label : `Union[str, int]`, optional (default = `None`)
            The gold label; leave it out for prediction. Integers are stored as strings.

        # Returns

        An `Instance` with a `tokens` field and, if `label` is given, a `label` field.
        """
        premise_tokens = self._tokenizer.tokenize(premise)
        hypothesis_tokens = self._tokenizer.tokenize(hypothesis)
        self._check_wordpieces("premise", premise, len(premise_tokens))
        self._check_wordpieces("hypothesis", hypothesis, len(hypothesis_tokens))
        premise_tokens, hypothesis_tokens = self._truncate_pair(premise_tokens, hypothesis_tokens)
        tokens = self._tokenizer.add_special_tokens(premise_tokens, hypothesis_tokens)
        fields: Dict[str, Field] = {"tokens": TextField(tokens)}
        if label is not None:
            fields["label"] = LabelField(str(label).strip(), label_namespace="labels")
        return Instance(fields)

    def _truncate_pair(
        self, first: List[Token], second: List[Token]
    ) -> Tuple[List[Token], List[Token]]:
        """
        Drops wordpieces from the end of the longer list (the second one on ties) until both
        fit in `max_length` together with the special tokens of a pair.
        """
        budget = self._max_length - self._tokenizer.num_special_tokens_for_pair()
        first_length, second_length = len(first), len(second)
        while first_length + second_length > budget:
            if first_length > second_length:
                first_length -= 1
            else:
                second_length -= 1
        return first[:first_length], second[:second_length]
