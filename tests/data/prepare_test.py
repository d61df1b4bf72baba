"""Tests of `python -m early_exit.data.prepare` on small samples and, where present, the real data.

The samples under `test_fixtures/converters/` are written in each dataset's official schema. The
real files live in `../shared/data` next to the repository; those tests are skipped when it is
not there (as in a user's clone).
"""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import List

import pytest

from early_exit.data.prepare import PrepareError, prepare
from early_exit.data.prepare.cli import main
from tests import FIXTURES_ROOT, PROJECT_ROOT

SAMPLES = FIXTURES_ROOT / "converters"
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data"
real_data = pytest.mark.skipif(
    not REAL_DATA.is_dir(), reason=f"real data folder {REAL_DATA} is not there"
)


def read_tsv(path: Path, columns: int) -> List[List[str]]:
    """Reads an output split, checking the format every line must have."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    rows = [line.split("\t") for line in text[:-1].split("\n")]
    for row in rows:
        assert len(row) == columns, row
        assert all(value and value == " ".join(value.split()) for value in row), row
    return rows


def read_splits(directory: Path, columns: int = 2):
    return {name: read_tsv(directory / f"{name}.tsv", columns) for name in ("train", "dev", "test")}


def copy_sample(name: str, tmp_path: Path) -> Path:
    target = tmp_path / "source" / name
    shutil.copytree(SAMPLES / name, target)
    return target


def raises(match: str):
    return pytest.raises(PrepareError, match=match)


# ----------------------------------------------------------------------------------------- sst2


def test_sst2_sample_uses_glue_dev_as_test_and_carves_dev(tmp_path):
    report = prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=3)
    splits = read_splits(tmp_path / "text_cat" / "sst2")
    assert splits["test"] == [
        ["positive", "a small gem of a movie ."],
        ["negative", "the jokes fall flat , one after another ."],
        ["positive", "you 'll leave the theater smiling ."],
        ["negative", "a joyless , paint-by-numbers sequel ."],
    ]
    assert len(splits["dev"]) == 3 and len(splits["train"]) == 9
    glue_train = (SAMPLES / "sst2" / "train.tsv").read_text().splitlines()[1:]
    expected = Counter(
        ("positive" if label == "1" else "negative", " ".join(sentence.split()))
        for sentence, label in (line.split("\t") for line in glue_train)
    )
    assert Counter(map(tuple, splits["train"] + splits["dev"])) == expected
    assert ["positive", "the cast is uniformly excellent"] in splits["train"] + splits["dev"]
    assert report.splits["test"].labels == Counter(positive=2, negative=2)
    assert "test.tsv has no labels (its 3 rows are not used)" in report.notes[0]
    assert "dev = a seeded carve-out of 3 rows of GLUE train.tsv" in report.notes[0]


def test_same_seed_same_bytes_other_seed_other_carve(tmp_path):
    for name, seed in (("a", 13), ("b", 13), ("c", 14)):
        prepare("sst2", SAMPLES / "sst2", tmp_path / name, dev_size=4, seed=seed)
    a, b, c = (tmp_path / name / "text_cat" / "sst2" for name in "abc")
    for split in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (a / split).read_bytes() == (b / split).read_bytes()
    assert (a / "dev.tsv").read_bytes() != (c / "dev.tsv").read_bytes()


def test_max_train_keeps_a_seeded_sample_and_counts_the_rest(tmp_path):
    full = prepare("sst2", SAMPLES / "sst2", tmp_path / "full", dev_size=3)
    small = prepare("sst2", SAMPLES / "sst2", tmp_path / "small", dev_size=3, max_train=4)
    full_train = read_tsv(tmp_path / "full" / "text_cat" / "sst2" / "train.tsv", 2)
    small_train = read_tsv(tmp_path / "small" / "text_cat" / "sst2" / "train.tsv", 2)
    assert len(small_train) == 4 and all(row in full_train for row in small_train)
    assert [row for row in full_train if row in small_train] == small_train  # order is kept
    assert small.splits["train"].dropped == Counter({"not in the seeded --max-train 4 sample": 5})
    assert full.splits["dev"].rows == small.splits["dev"].rows == 3
    assert "a seeded sample of 4 of its 9 rows" in small.notes[-1]


@pytest.mark.parametrize(
    "line, message",
    [
        ("a fine film \t2\n", r"train\.tsv, line 3: unknown label '2'"),
        ("a fine film\n", r"train\.tsv, line 3: expected 2 columns \(sentence, label\), found 1"),
        ("a fine\tfilm\t1\n", r"train\.tsv, line 3: expected 2 columns"),
    ],
)
def test_sst2_bad_rows_name_file_and_line(tmp_path, line, message):
    source = copy_sample("sst2", tmp_path)
    lines = (source / "train.tsv").read_text().splitlines(keepends=True)
    (source / "train.tsv").write_text("".join(lines[:2] + [line] + lines[2:]))
    with raises(message):
        prepare("sst2", source, tmp_path / "out", dev_size=2)
    assert not (tmp_path / "out").exists()


def test_sst2_wrong_header_and_missing_file(tmp_path):
    source = copy_sample("sst2", tmp_path)
    (source / "dev.tsv").write_text("index\tsentence\n0\tfoo\n")
    with raises(r"dev\.tsv, line 1: expected the header \['sentence', 'label'\]"):
        prepare("sst2", source, tmp_path / "out")
    (source / "dev.tsv").unlink()
    with raises(r"dev\.tsv: missing file"):
        prepare("sst2", source, tmp_path / "out")


def test_existing_output_is_kept_unless_force(tmp_path):
    prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=2)
    train = tmp_path / "text_cat" / "sst2" / "train.tsv"
    before = train.read_bytes()
    with raises(r"train\.tsv: already exists and is not empty; pass --force"):
        prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=3)
    assert train.read_bytes() == before
    prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=3, force=True)
    assert len(read_tsv(train, 2)) == 9
    train.write_text("")  # an empty file may be replaced without --force
    (tmp_path / "text_cat" / "sst2" / "dev.tsv").write_text("")
    (tmp_path / "text_cat" / "sst2" / "test.tsv").unlink()
    prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=3)


# -------------------------------------------------------------------------------------- ag_news


def test_ag_news_sample_unescapes_fields(tmp_path):
    report = prepare("ag_news", SAMPLES / "ag_news", tmp_path, dev_size=2)
    splits = read_splits(tmp_path / "text_cat" / "ag_news")
    assert splits["test"][:5] == [
        [
            "Business",
            "Shares Rise on Upbeat Forecast (Reuters) Reuters - Shares of Acme Corp. rose $2 after "
            'it said sales would "comfortably" beat targets.',
        ],
        [
            "Sports",
            "Late Goal Lifts United AP - A header in stoppage time gave United a 2-1 win, and the "
            'no-nonsense coach called it "deserved."',
        ],
        [
            "Sci/Tech",
            "New Chip Promises Longer Battery Life A chip maker said its new design halves power "
            "use. Analysts were cautious.",
        ],
        [
            "World",
            "Talks Resume in Capital Negotiators met again on Tuesday after a week of delays, "
            "officials said.",
        ],
        [
            "Business",
            "Oil Slips Below US$40 Crude prices fell for a third day on signs of ample supply.",
        ],
    ]
    fares = "Airline Cuts Fares Fares on some routes fell by 10% ($20) as competition grew."
    assert ["Business", fares] in splits["train"] + splits["dev"]
    assert len(splits["train"]) == 4 and len(splits["dev"]) == 2
    assert report.splits["test"].labels == Counter(World=3, Sports=2, Business=2, **{"Sci/Tech": 3})
    assert "dev = a seeded carve-out of 2 rows of train.csv" in report.notes[0]


def test_ag_news_cpu_subset_carves_test_dev_and_train_from_test_csv(tmp_path):
    source = copy_sample("ag_news", tmp_path)
    (source / "train.csv").unlink()  # not needed
    report = prepare("ag_news", source, tmp_path / "out", cpu_subset=True, test_size=3, dev_size=2)
    splits = read_splits(tmp_path / "out" / "text_cat" / "ag_news")
    prepare("ag_news", SAMPLES / "ag_news", tmp_path / "all", dev_size=1)
    official_test = read_tsv(tmp_path / "all" / "text_cat" / "ag_news" / "test.tsv", 2)
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [5, 2, 3]
    assert sorted(splits["train"] + splits["dev"] + splits["test"]) == sorted(official_test)
    assert report.splits["dev"].origin.startswith("seeded dev carve-out of test.csv")
    assert "test = a seeded carve-out of 3 rows of the official test.csv" in report.notes[0]
    assert "dev = a seeded carve-out of 2 of the other 7 rows" in report.notes[0]
    assert "train = the remaining 5 rows" in report.notes[0]
    again = prepare("ag_news", source, tmp_path / "again", cpu_subset=True, test_size=3, dev_size=2)
    assert read_splits(tmp_path / "again" / "text_cat" / "ag_news") == splits  # seeded
    assert again.notes == report.notes
    with raises(r"cannot carve 7 dev rows out of the 7 rows .* choose a smaller --dev-size"):
        prepare("ag_news", source, tmp_path / "big", cpu_subset=True, test_size=3, dev_size=7)


def test_ag_news_without_train_csv_names_what_it_found(tmp_path):
    source = copy_sample("ag_news", tmp_path)
    (source / "train.csv").rename(source / "train.prefix581.csv")
    with raises(r"train\.csv: missing the official train\.csv \(only train\.prefix581\.csv\)"):
        prepare("ag_news", source, tmp_path / "other")
    (source / "train.prefix581.csv").unlink()
    with raises(r"train\.csv: missing the official train\.csv; pass --cpu-subset"):
        prepare("ag_news", source, tmp_path / "other")


@pytest.mark.parametrize(
    "record, message",
    [
        ('"5","Title","Text"\n', r"test\.csv, line 3: unknown label '5'"),
        ('"1","Title only"\n', r"test\.csv, line 3: expected 3 columns \(class index, title, "),
        ('"1","Broken "quote","Text"\n', r"test\.csv, line 3: malformed CSV record"),
    ],
)
def test_ag_news_bad_records_name_file_and_line(tmp_path, record, message):
    source = copy_sample("ag_news", tmp_path)
    lines = (source / "test.csv").read_text().splitlines(keepends=True)
    (source / "test.csv").write_text("".join(lines[:2] + [record] + lines[2:]))
    with raises(message):
        prepare("ag_news", source, tmp_path / "out", dev_size=2)


def test_ag_news_checks_classes_txt(tmp_path):
    source = copy_sample("ag_news", tmp_path)
    (source / "classes.txt").write_text("Sports\nWorld\nBusiness\nSci/Tech\n")
    with raises(r"classes\.txt: expected the classes"):
        prepare("ag_news", source, tmp_path / "out", dev_size=2)


# ----------------------------------------------------------------------------------------- imdb


def test_imdb_csv_sample(tmp_path):
    report = prepare("imdb", SAMPLES / "imdb_sample.csv", tmp_path, dev_size=2)
    splits = read_splits(tmp_path / "text_cat" / "imdb")
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [3, 2, 5]
    rows = splits["train"] + splits["dev"] + splits["test"]
    assert len(rows) == 10 and len({tuple(row) for row in rows}) == 10
    for expected in (
        [
            "positive",
            "I loved this film, from the first scene to the last. The score is wonderful.",
        ],
        ["negative", 'The lead says "trust me" about forty times, and I never did.'],
        ["negative", "The sequel nobody asked for. Flat jokes, flat characters."],
        ["positive", "Beautifully shot and beautifully acted."],
    ):
        assert expected in rows
    assert not any("<br" in row[1] for row in rows)
    assert (
        "the IMDB CSV has no splits: test = a seeded carve-out of 5 of its 10 rows"
        in report.notes[0]
    )


@pytest.mark.parametrize("source", ["aclImdb", "."])
def test_imdb_aclimdb_folders(tmp_path, source):
    report = prepare("imdb", SAMPLES / source, tmp_path, dev_size=2)
    splits = read_splits(tmp_path / "text_cat" / "imdb")
    assert splits["test"] == [
        ["negative", "Too long and too loud."],  # 4_3.txt comes before 12_1.txt
        ["negative", "I walked out."],
        ["positive", "Better than I expected."],
        ["positive", "A small masterpiece."],
    ]
    train = splits["train"] + splits["dev"]
    assert sorted(train) == sorted(
        [
            ["negative", "Boring from start to finish."],
            ["negative", "It had promise but wasted it."],
            ["negative", "Awful acting. Awful script."],
            ["positive", "The best film of the year, easily."],
            ["positive", "A delight. Funny and warm."],
            ["positive", "Great fun for the whole family."],
        ]
    )
    assert "dev = a seeded carve-out of 2 rows of aclImdb/train" in report.notes[0]


def test_imdb_bad_input(tmp_path):
    bad = tmp_path / "reviews.csv"
    bad.write_text('review,sentiment\n"Fine.",positive\n"Meh.",neutral\n')
    with raises(r"reviews\.csv, line 3: unknown label 'neutral'"):
        prepare("imdb", bad, tmp_path / "out")
    bad.write_text("text,label\nFine.,positive\n")
    with raises(r"reviews\.csv, line 1: expected the header \['review', 'sentiment'\]"):
        prepare("imdb", bad, tmp_path / "out")
    with raises(r"reviews\.txt: missing"):
        prepare("imdb", tmp_path / "reviews.txt", tmp_path / "out")
    source = copy_sample("aclImdb", tmp_path)
    (source / "test" / "pos" / "notes.txt").write_text("x")
    with raises(r"notes\.txt: review file name is not <id>_<rating>\.txt"):
        prepare("imdb", source, tmp_path / "out", dev_size=2)


# ------------------------------------------------------------------------------------------ nli


def test_snli_jsonl_drops_and_counts_no_gold_label(tmp_path):
    report = prepare("snli", SAMPLES / "snli", tmp_path)
    splits = read_splits(tmp_path / "nli" / "snli", 3)
    assert splits["train"] == [
        ["neutral", "A man in a red coat is shoveling snow.", "A man is clearing his driveway."],
        ["entailment", "A man in a red coat is shoveling snow.", "A man is outside in winter."],
        [
            "contradiction",
            "A man in a red coat is shoveling snow.",
            "A man is swimming in the sea.",
        ],
        ["entailment", "Two dogs play with a ball on the grass.", "Animals are playing."],
        ["contradiction", "Two dogs play with a ball on the grass.", "The dogs are asleep."],
    ]
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [5, 6, 4]
    reason = "gold label '-' (no annotator majority)"
    assert report.splits["dev"].dropped == Counter({f"snli_1.0_dev.jsonl: {reason}": 2})
    assert report.splits["test"].dropped == Counter({f"snli_1.0_test.jsonl: {reason}": 1})
    assert f"dropped 2: snli_1.0_dev.jsonl: {reason}" in report.format()


def test_snli_cpu_subset_on_jsonl_and_on_esnli_triples(tmp_path):
    report = prepare("snli", SAMPLES / "snli", tmp_path / "jsonl", cpu_subset=True, dev_size=2)
    jsonl = read_splits(tmp_path / "jsonl" / "nli" / "snli", 3)
    assert len(jsonl["train"]) == 4 and len(jsonl["dev"]) == 2
    assert "SNLI train is in SOURCE but not used" in report.notes[-1]

    with raises(r"esnli: no SNLI train split; with only dev and test, pass --cpu-subset"):
        prepare("snli", SAMPLES / "esnli", tmp_path / "esnli")
    report = prepare("snli", SAMPLES / "esnli", tmp_path / "esnli", cpu_subset=True, dev_size=2)
    triple = read_splits(tmp_path / "esnli" / "nli" / "snli", 3)
    assert triple["test"] == [
        ["entailment", "A cyclist rides up a steep hill .", "A person is on a bike ."],
        ["neutral", "A cyclist rides up a steep hill .", "The cyclist is racing ."],
        ["contradiction", "A cyclist rides up a steep hill .", "The cyclist is asleep at home ."],
        ["entailment", "An old man feeds pigeons .", "Birds are being fed ."],
    ]
    assert len(triple["train"]) == 4 and len(triple["dev"]) == 2
    assert "e-SNLI/InferSent s1/s2/labels files (dev, test present)" in report.notes[0]
    assert "train = 4 rows of SNLI dev (all but the dev carve-out)" in report.notes[1]
    # Same seed, same rows chosen, whatever the layout (the gold-labelled dev rows are the same).
    untokenized = [row[2].replace(".", " .") for row in jsonl["dev"]]
    assert untokenized == [row[2] for row in triple["dev"]]


def test_snli_triples_with_train_and_their_errors(tmp_path):
    source = copy_sample("esnli", tmp_path)
    for prefix in ("s1", "s2", "labels"):
        shutil.copy(source / f"{prefix}.test", source / f"{prefix}.train")
    prepare("snli", source, tmp_path / "out")
    assert len(read_tsv(tmp_path / "out" / "nli" / "snli" / "train.tsv", 3)) == 4
    (source / "labels.train").write_text("entailment\nneutral\nmaybe\nentailment\n")
    with raises(r"labels\.train, line 3: unknown label 'maybe'"):
        prepare("snli", source, tmp_path / "out", force=True)
    (source / "labels.train").write_text("entailment\nneutral\n")
    with raises(
        r"labels\.train: the three files must have the same number of lines \(s1\.train: 4"
    ):
        prepare("snli", source, tmp_path / "out", force=True)
    (source / "labels.train").unlink()
    with raises(r"labels\.train: missing file"):
        prepare("snli", source, tmp_path / "out", force=True)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"gold_label": "neutral", "sentence1": "A"\n', r"line 2: invalid JSON"),
        ('{"gold_label": "neutral", "sentence1": "A"}\n', r"line 2: key 'sentence2' missing"),
        ('{"gold_label": "maybe", "sentence1": "A", "sentence2": "B"}\n', r"line 2: unknown label"),
        ('["neutral", "A", "B"]\n', r"line 2: expected a JSON object"),
    ],
)
def test_nli_jsonl_errors_name_file_and_line(tmp_path, line, message):
    source = copy_sample("mnli", tmp_path)
    path = source / "multinli_1.0_dev_mismatched.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1] + [line] + lines[1:]))
    with raises(r"multinli_1\.0_dev_mismatched\.jsonl, " + message):
        prepare("mnli", source, tmp_path / "out")


def test_mnli_dev_matched_is_dev_and_dev_mismatched_is_test(tmp_path):
    report = prepare("mnli", SAMPLES / "mnli", tmp_path)
    splits = read_splits(tmp_path / "nli" / "mnli", 3)
    assert splits["dev"] == [
        ["entailment", "Buses leave the square every hour.", "There is an hourly bus."],
        ["contradiction", "Applications must be filed by June.", "There is no deadline."],
        [
            "entailment",
            "The band's second album sold poorly.",
            "The band made more than one album.",
        ],
    ]
    assert [row[1] for row in splits["test"]] == [
        "Your gift helped us feed forty families.",
        "Cotton was the region's main crop.",
        "I never liked that car anyway.",
        "Words change meaning over time.",
    ]
    assert len(splits["train"]) == 5
    assert sum(report.splits["dev"].dropped.values()) == 1
    assert "MultiNLI layout: official JSON lines" in report.notes[0]
    assert "dev = dev_matched, test = dev_mismatched" in report.notes[1]


def _write_mnli_triples(source: Path, suffixes) -> None:
    """The JSON lines sample as InferSent's s1/s2/labels files, one suffix per split."""
    source.mkdir(parents=True)
    for split, file in (
        ("train", "multinli_1.0_train.jsonl"),
        ("dev", "multinli_1.0_dev_matched.jsonl"),
        ("test", "multinli_1.0_dev_mismatched.jsonl"),
    ):
        records = [json.loads(line) for line in (SAMPLES / "mnli" / file).read_text().splitlines()]
        for prefix, key in (("s1", "sentence1"), ("s2", "sentence2"), ("labels", "gold_label")):
            text = "".join(record[key] + "\n" for record in records)
            (source / f"{prefix}.{suffixes[split]}").write_text(text)


@pytest.mark.parametrize(
    "suffixes",
    [
        {"train": "train", "dev": "dev", "test": "test"},  # as InferSent's get_data.bash names them
        {"train": "train", "dev": "dev_matched", "test": "dev_mismatched"},
    ],
)
def test_mnli_infersent_triples_give_the_same_splits_as_the_jsonl(tmp_path, suffixes):
    prepare("mnli", SAMPLES / "mnli", tmp_path / "jsonl")
    _write_mnli_triples(tmp_path / "triples", suffixes)
    report = prepare("mnli", tmp_path / "triples", tmp_path / "out")
    assert read_splits(tmp_path / "out" / "nli" / "mnli", 3) == read_splits(
        tmp_path / "jsonl" / "nli" / "mnli", 3
    )
    assert "e-SNLI/InferSent s1/s2/labels files" in report.notes[0]
    assert sum(report.splits["dev"].dropped.values()) == 1  # the '-' pair, as from JSON lines
    if suffixes["dev"] == "dev_matched":
        assert "dev = dev_matched, test = dev_mismatched present" in report.notes[0]


def test_mnli_triples_without_a_split_name_it(tmp_path):
    _write_mnli_triples(tmp_path / "triples", {"train": "train", "dev": "dev", "test": "test"})
    for prefix in ("s1", "s2", "labels"):
        (tmp_path / "triples" / f"{prefix}.test").unlink()
    with raises(r"triples: no MultiNLI test split \(expected multinli_1\.0_dev_mismatched\.jsonl"):
        prepare("mnli", tmp_path / "triples", tmp_path / "out")


def test_mnli_jsonl_without_a_split_names_the_file(tmp_path):
    source = copy_sample("mnli", tmp_path)
    (source / "multinli_1.0_dev_mismatched.jsonl").unlink()
    with raises(
        r"no MultiNLI test split \(expected multinli_1\.0_dev_mismatched\.jsonl or "
        r"\{s1,s2,labels\}\.test\|dev_mismatched\)"
    ):
        prepare("mnli", source, tmp_path / "out")


# ---------------------------------------------------------------------------------- options, CLI


def test_option_errors(tmp_path):
    with raises(r"--cpu-subset is defined for ag_news, snli only; for sst2, use --max-train N"):
        prepare("sst2", SAMPLES / "sst2", tmp_path, cpu_subset=True)
    with raises(r"--dev-size must be at least 1, got 0"):
        prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=0)
    with raises(r"cannot carve 12 dev rows out of the 12 rows of GLUE train\.tsv"):
        prepare("sst2", SAMPLES / "sst2", tmp_path, dev_size=12)
    with raises(r"unknown dataset 'sst5'"):
        prepare("sst5", SAMPLES / "sst2", tmp_path)


def test_cli_prints_summary(tmp_path, capsys):
    args = ["snli", str(SAMPLES / "snli"), str(tmp_path), "--cpu-subset", "--dev-size", "2"]
    assert main(args + ["--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "train: 4 rows written to train.tsv (entailment " in out
    assert "from: seeded dev carve-out of SNLI dev (snli_1.0_dev.jsonl)" in out
    assert "dropped 2: snli_1.0_dev.jsonl: gold label '-'" in out
    assert "--dev-size 2, --seed 5" in out


def test_cli_error_exits_2_without_traceback(tmp_path):
    source = copy_sample("sst2", tmp_path)
    with open(source / "dev.tsv", "a") as handle:
        handle.write("a fine film\t7\n")
    command = [sys.executable, "-m", "early_exit.data.prepare", "sst2", str(source), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {source / 'dev.tsv'}, line 6: unknown label '7' (expected one of '0', '1')"
    )


# ------------------------------------------------------------------------------------ real data


@real_data
def test_real_sst2(tmp_path):
    report = prepare("sst2", REAL_DATA / "sst2", tmp_path)
    splits = read_splits(tmp_path / "text_cat" / "sst2")
    assert len(splits["train"]) == 67349 - 872
    assert len(splits["dev"]) == 872
    assert Counter(row[0] for row in splits["test"]) == Counter(negative=428, positive=444)
    labels = Counter(row[0] for row in splits["train"] + splits["dev"])
    assert labels == Counter(negative=29780, positive=37569)
    assert splits["test"][0] == ["positive", "it 's a charming and often affecting journey ."]
    assert "its 1821 rows are not used" in report.notes[0]


@real_data
def test_real_sst2_max_train(tmp_path):
    prepare("sst2", REAL_DATA / "sst2", tmp_path, max_train=8000)
    assert len(read_tsv(tmp_path / "text_cat" / "sst2" / "train.tsv", 2)) == 8000


@real_data
def test_real_ag_news_cpu_subset(tmp_path):
    report = prepare("ag_news", REAL_DATA / "ag_news", tmp_path, cpu_subset=True)
    splits = read_splits(tmp_path / "text_cat" / "ag_news")
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [5000, 600, 2000]
    classes = {"World", "Sports", "Business", "Sci/Tech"}
    for name in ("train", "dev", "test"):
        assert {row[0] for row in splits[name]} == classes
    rows = {name: {tuple(row) for row in splits[name]} for name in ("train", "dev", "test")}
    assert not rows["train"] & rows["test"] and not rows["dev"] & (rows["train"] | rows["test"])
    labels = Counter(row[0] for name in ("train", "dev", "test") for row in splits[name])
    assert labels == Counter({name: 1900 for name in classes})
    assert sum(report.splits["dev"].labels.values()) == 600
    texts = " ".join(row[1] for name in ("train", "dev", "test") for row in splits[name])
    assert "\\" not in texts
    assert "gave no indication" in texts and "a nuclear-capable" in texts
    assert "$1 billion" in texts and "profits of A$378m" in texts and "US$5 million" in texts
    with raises(r"missing the official train\.csv \(only train\.prefix581\.csv\)"):
        prepare("ag_news", REAL_DATA / "ag_news", tmp_path / "full")


@real_data
def test_real_snli_cpu_subset(tmp_path):
    with raises(r"no SNLI train split"):
        prepare("snli", REAL_DATA / "snli", tmp_path)
    prepare("snli", REAL_DATA / "snli", tmp_path, cpu_subset=True)
    splits = read_splits(tmp_path / "nli" / "snli", 3)
    assert [len(splits[name]) for name in ("train", "dev", "test")] == [8842, 1000, 9824]
    dev = Counter(row[0] for row in splits["train"] + splits["dev"])
    assert dev == Counter(entailment=3329, contradiction=3278, neutral=3235)
    test = Counter(row[0] for row in splits["test"])
    assert test == Counter(entailment=3368, contradiction=3237, neutral=3219)
    assert splits["train"][0] == [
        "neutral",
        "Two women are embracing while holding to go packages .",
        "The sisters are hugging goodbye while holding to go packages after just eating lunch .",
    ]
