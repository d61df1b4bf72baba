import re

import pytest
import torch

from bench.runners.cli import main
from tests import FIXTURES_ROOT
from tests.sweep.trained_models import trained_archive

DATA = FIXTURES_ROOT / "data" / "text_classification.tsv"


@pytest.fixture(scope="module")
def text_archive(tmp_path_factory):
    return trained_archive(tmp_path_factory, "text")


def test_the_page_has_every_runner_and_peer_with_consistent_accuracies(text_archive, tmp_path):
    output = tmp_path / "runners.md"
    argv = ["--archive", f"tiny={text_archive}:{DATA}:{DATA}"]
    argv += ["--instances", "6", "--repeats", "1", "--threads", "1"]
    main(argv + ["--work-dir", str(tmp_path / "work"), "--output", str(output)])
    rows = {}
    for line in output.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = cells
    assert list(rows) == [
        "early_exit, torch",
        "early_exit, onnxruntime fp32",
        "early_exit, onnxruntime int8",
        "early_exit, openvino fp32",
        "plain transformers (torch)",
        "ONNX Runtime fp32",
        "ONNX Runtime int8",
        "OpenVINO fp32",
    ]
    # The peers run the model's full path: in fp32 they predict what the model does at full depth.
    full_depth = rows["early_exit, torch"][1]
    fp32 = [
        "early_exit, onnxruntime fp32",
        "early_exit, openvino fp32",
        "plain transformers (torch)",
    ]
    for name in fp32 + ["ONNX Runtime fp32"]:
        assert rows[name][1] == full_depth, name
    assert rows["OpenVINO fp32"][1] == full_depth
    for cells in rows.values():
        assert float(cells[5]) > 0 and float(cells[6]) > 0  # ms at batch 1 and 32
    assert "\n.venv/bin/python -m bench.runners --archive " in output.read_text()


def test_the_peers_take_the_token_types_of_sentence_pairs(tmp_path_factory, tmp_path):
    from bench.runners import peers
    from early_exit.models.archive_loading import load_early_exit_archive
    from early_exit.models.head_outputs import collect_head_outputs
    from early_exit.dataset_readers import read_indexed
    from early_exit.sweep.timing import prepare_batches

    archive = load_early_exit_archive(str(trained_archive(tmp_path_factory, "nli")))
    model, reader = archive.model.eval(), archive.validation_dataset_reader
    instances = read_indexed(reader, str(FIXTURES_ROOT / "data" / "nli.tsv"))
    full = peers.FullPath(model).eval()
    assert full.input_names == ["token_ids", "mask", "type_ids"]
    inputs = peers.peer_inputs(prepare_batches(model, instances, len(instances)))
    assert bool(inputs[0]["type_ids"].any())  # the hypotheses are type 1
    last = collect_head_outputs(model, instances).logits[:, -1]  # (num_instances, num_labels)
    exported = peers.export_full_path(full, str(tmp_path))
    runs = [peers.torch_peer(full)]
    runs += [make(exported["fp32"], 1) for make in (peers.onnxruntime_peer, peers.openvino_peer)]
    no_types = {**inputs[0], "type_ids": torch.zeros_like(inputs[0]["type_ids"])}
    with torch.inference_mode():
        for run in runs:
            assert torch.allclose(torch.from_numpy(run(inputs[0])), last, atol=1e-4)
        # Without the token types the last head's logits are not the model's.
        assert not torch.allclose(torch.from_numpy(runs[0](no_types)), last, atol=1e-4)
