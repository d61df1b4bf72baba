from typing import Any, Dict, Optional, Union

from overrides import overrides

from allennlp.data import DatasetReader, Instance
from allennlp.data.fields import Field, LabelField, TextField
from allennlp.data.tokenizers import PretrainedTransformerTokenizer

from early_exit.dataset_readers.line_reader import EarlyExitLineReader


@DatasetReader.register("early_exit_text_classification")
class EarlyExitTextClassificationReader(EarlyExitLineReader):
    """
    Reads single-text classification data in the format of Schwartz et al. (2020), one example
    per line: `label<TAB>text`. JSON lines files are read too, one object per line with a
    `"text"` (or `"sentence"`) key and a `"label"` key (a string or an integer), e.g.
    `{"text": "a great movie", "label": "positive"}`.

    The text is tokenized into wordpieces with the transformer's tokenizer, truncated to
    `max_length` wordpieces including the special tokens, and wrapped in the transformer's
    special tokens (`[CLS] text [SEP]` for BERT).

    Registered as a `DatasetReader` with name "early_exit_text_classification".

    Instances have these fields:

    - `tokens` (`TextField`): the wordpieces with special tokens,
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

    text_fields = ("text",)
    json_aliases = {"text": ("sentence",)}

    def __init__(
        self,
        transformer_model: str,
        max_length: int = 512,
        tokenizer_kwargs: Optional[Dict[str, Any]] = None,
        **kwargs,
    ) -> None:
        super().__init__(
            transformer_model, max_length=max_length, tokenizer_kwargs=tokenizer_kwargs, **kwargs
        )
        # One tokenizer call that truncates and adds the special tokens itself: the same tokens
        # as tokenizing, truncating and allennlp's `add_special_tokens`, which copies every token
        # (about half the reader's time per text in `allennlp predict`).
        self._sequence_tokenizer = PretrainedTransformerTokenizer(
            self._transformer_model,
            add_special_tokens=True,
            max_length=self._max_length,
            tokenizer_kwargs=tokenizer_kwargs,
        )
        self._num_special_tokens = len(
            self._sequence_tokenizer.single_sequence_start_tokens
            + self._sequence_tokenizer.single_sequence_end_tokens
        )

    # The base class declares `text_to_instance(*inputs)`, which no concrete signature matches,
    # hence no signature check.
    @overrides(check_signature=False)
    def text_to_instance(  # type: ignore
        self, text: str, label: Optional[Union[str, int]] = None
    ) -> Instance:
        """
        # Parameters

        text : `str`
            The text to classify.
        label : `Union[str, int]`, optional (default = `None`)
            The gold label; leave it out for prediction. Integers are stored as strings.

        # Returns

        An `Instance` with a `tokens` field and, if `label` is given, a `label` field.
        """
        tokens = self._sequence_tokenizer.tokenize(text)
        self._check_wordpieces("text", text, len(tokens) - self._num_special_tokens)
        fields: Dict[str, Field] = {"tokens": TextField(tokens)}
        if label is not None:
            fields["label"] = LabelField(str(label).strip(), label_namespace="labels")
        return Instance(fields)
