"""Output that fits: every table at 60, 80 and 200 columns keeps ids, names and URLs whole on one line.

Values are realistic: BigEarthNet-S2 (reBEN) patch ids, the 43 label names, Zenodo URLs, model
names as long as the registry's. Every command's table is rendered through the CLI runner with
``COLUMNS`` set where the command runs offline in a second, and through its table function otherwise.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from rich.text import Text

from rsir_cli.cli import output
from rsir_cli.datasets import bigearthnet as ben
from rsir_cli.store import EmbeddingStore
from tests.cli import run

WIDTHS = (60, 80, 200)
IDS = [
    "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57",
    "S2B_MSIL2A_20180421T100029_N9999_R122_T33UVP_75_43",
    "S2A_MSIL2A_20171221T112501_N9999_R037_T29SND_56_35",
    "S2B_MSIL2A_20180502T093039_N9999_R136_T35VNL_10_80",
]
LONG_LABELS = [label for label in ben.LABELS_43 if len(label) > 40]  # e.g. "Land principally occupied by ..."
MODELS = ("prithvi-eo2-300m-tl", "prithvi")
URL = "https://zenodo.org/records/12687186/files/BigEarthNet-S2-v1.0.tar.gz?download=1"


def render(table: Any, width: int) -> str:
    """What ``rsir`` prints for ``table`` on a terminal (or a pipe) ``width`` columns wide."""
    buffer = io.StringIO()
    Console(file=buffer, width=width, soft_wrap=True).print(table)  # as output.stdout
    return buffer.getvalue()


def assert_fits(text: str, width: int, whole: list[str]) -> None:
    """No line is wider than ``width`` (save a value of ``whole`` that alone is wider, standing alone
    on its line), and every value of ``whole`` appears unsplit within one line."""
    lines = text.splitlines()
    for line in lines:
        if len(line) > width:
            assert line.strip() in whole and len(line.strip()) > width - 2, f"line wider than {width}: {line!r}"
    for value in whole:
        assert any(value in line for line in lines), f"{value!r} is split or missing at {width} columns:\n{text}"


def search_rows(queries: int) -> tuple[list[str], list[list[str]]]:
    labels = "; ".join(sorted(ben.LABELS_43)[:6] + LONG_LABELS)
    rows = [
        ([IDS[q]] if queries > 1 else [])
        + [str(rank), IDS[(q + rank) % 4], f"{0.1 * rank:.4g}", labels, "48.1234, 11.5678"]
        for q in range(queries)
        for rank in range(1, 4)
    ]
    columns = (["query"] if queries > 1 else []) + ["rank", "id", "distance", "labels", "location (lat, lon)"]
    return columns, rows


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("queries", [1, 2])
def test_search_table_keeps_ids_whole_and_shortens_labels(width: int, queries: int) -> None:
    columns, rows = search_rows(queries)
    kinds = {"query": "id", "id": "id", "labels": "labels"}
    table = output.make_table(
        f"Top 3 in {MODELS[0]} / bigearthnet / test", columns, rows, numeric=("rank", "distance"), kinds=kinds
    )
    table.caption = Text("RANDOM WEIGHTS: these matches mean nothing", style="bold magenta")
    text = render(table, width)
    shown = [cell for row in rows for cell in row if cell in IDS]
    assert_fits(text, width, [*shown, MODELS[0], "RANDOM WEIGHTS:"])
    assert rows[0][-2] not in text and "…" in text, "labels are shortened with an ellipsis"
    assert sum(line.count("…") for line in text.splitlines()) == len(rows), "one line of labels per match"


def test_an_id_never_splits_at_any_width() -> None:
    columns, rows = search_rows(2)
    table = output.make_table(None, columns, rows, numeric=("rank", "distance"), kinds={"labels": "labels"})
    for width in range(52, 221, 7):  # the id is 50 characters
        assert_fits(render(table, width), width, [cell for row in rows for cell in row if cell in IDS])


def paper_data() -> dict[str, Any]:
    columns = [("bigearthnet", "BigEarthNet-43"), ("bigearthnet", "BigEarthNet-19"), ("forestnet", "ForestNet-12")]
    columns.append(("forestnet", "ForestNet-4"))
    methods = ("Embedding (cosine)", "Binary emb. (768)", "Trivial hash (32)", "LSH (32)")
    cells = [
        {"model": model, "title": method, "column": column, "dataset": dataset, "random_weights": model == "prithvi",
         "map": 45.125 + i, "map_ci95": 1.234}
        for model in MODELS for i, method in enumerate(methods) for dataset, column in columns
    ]  # fmt: skip
    return {"results": cells, "k": 20, "match": "any"}


@pytest.mark.parametrize("width", WIDTHS)
def test_evaluate_paper_table_is_one_table_per_dataset_when_too_wide(width: int) -> None:
    from rsir_cli.cli.evaluate_cmd import _paper_table

    text = render(_paper_table(paper_data(), "map"), width)
    headers = ["BigEarthNet-43", "BigEarthNet-19", "ForestNet-12", "ForestNet-4"]
    values = [f"{45.125 + i:.2f} ± 1.23" for i in range(4)]
    assert_fits(text, width, [*MODELS, "Trivial hash (32)", "Binary emb. (768)", *headers, *values])
    header_lines = [line for line in text.splitlines() if re.search(r"\bmodel\b.*\bmethod\b", line)]
    if width == 200:  # room for the paper's layout: one table, every column
        assert len(header_lines) == 1 and all(h in header_lines[0] for h in [*headers, "Mean"])
    if width == 80:  # one table per dataset, model and method in each
        assert len(header_lines) == 2
        assert "BigEarthNet-43" in header_lines[0] and "BigEarthNet-19" in header_lines[0]
        assert "ForestNet-12" in header_lines[1] and "ForestNet-4" in header_lines[1]
    if width == 60:  # a table per label set
        assert len(header_lines) == 4
    # Every row of the paper is there: each method once per model in every table.
    assert text.count("LSH (32)") == 2 * len(header_lines)


def test_evaluate_cli_at_80_columns(tmp_path: Path) -> None:
    store = labelled_store(tmp_path, models=MODELS)
    result = run(
        "evaluate", "--store", store, "--hash", "none,lsh", "--seeds", "1", "--metric", "map", env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout, 80, [*MODELS, "BigEarthNet-43", "BigEarthNet-19"])


@pytest.mark.parametrize("width", WIDTHS)
def test_download_dry_run_table_keeps_urls_and_paths_whole(width: int) -> None:
    destination = "/home/someone/projects/rsir/rsir-data/bigearthnet/.downloads/BigEarthNet-S2-v1.0.tar.gz"
    rows = [
        ["BigEarthNet-S2-v1.0.tar.gz", URL, "66.0 GB", "md5 5a64e9ce38deb036a435a7b59494924c\nmd5 published by Zenodo",
         destination, "would download"],
        ["test.csv", URL.replace("BigEarthNet-S2-v1.0.tar.gz", "test.csv"), "11.0 MB", "md5 697fb90677e30571b9ac7699b7e5b432",
         destination.replace("BigEarthNet-S2-v1.0.tar.gz", "test.csv"), "would download"],
    ]  # fmt: skip
    kinds = {"file": "name", "url": "url", "destination": "path"}
    columns = ["file", "url", "size", "checksum", "destination", "status"]
    text = render(
        output.make_table("bigearthnet: would download", columns, rows, numeric=("size",), kinds=kinds), width
    )
    whole = [cell for row in rows for cell in (row[0], row[1], row[4])] + ["5a64e9ce38deb036a435a7b59494924c"]
    assert_fits(text, width, whole)


def test_download_dry_run_cli_at_80_columns() -> None:
    plan = run("download", "bigearthnet", "--dry-run", "--json")
    assert plan.exit_code == 0, plan.output
    files = json.loads(plan.stdout)["files"]
    for columns in ("80", "60"):
        table = run("download", "bigearthnet", "--dry-run", env={"COLUMNS": columns})
        assert table.exit_code == 0, table.output
        whole = [f[key] for f in files for key in ("url", "name", "destination")]
        assert_fits(table.stdout, int(columns), whole)


@pytest.mark.parametrize("width", WIDTHS)
def test_bench_milvus_table_repeats_its_key_columns_when_split(width: int) -> None:
    from rsir_cli.cli.bench_milvus_cmd import COLUMNS, NUMERIC, _cells

    rows = [
        _cells({"size": size, "vectors": "binary 768", "engine": engine, "index": index, "note": "", "insert_s": 1.5,
                "index_s": 12.25, "mean_ms": 1.2345, "p50_ms": 1.1, "p95_ms": 2.3, "p99_ms": 3.4,
                "throughput_qps": 12345.0, "recall": 0.9876, "memory_mb": 1234.0})
        for size in (10_000, 125_866) for engine, index in (("exact", ""), ("milvus", "BIN_IVF_FLAT (nlist 128)"))
    ]  # fmt: skip
    kinds = {"vectors": "name", "index": "name"}
    table = output.make_table(
        "bench-milvus", COLUMNS, rows, numeric=NUMERIC, kinds=kinds, keys=("size", "vectors", "index")
    )
    text = render(table, width)
    assert_fits(text, width, ["binary 768", "BIN_IVF_FLAT", "125,866", "12,345", "0.9876", "p99 ms"])
    if width == 80:  # split: the size and index of a row are beside every one of its numbers
        assert text.count("BIN_IVF_FLAT") == 2 * 2 and text.count("recall") == 1


@pytest.mark.parametrize("args", [["--models"], ["--datasets"]])
@pytest.mark.parametrize("width", WIDTHS)
def test_info_tables_fit(args: list[str], width: int) -> None:
    from rsir_cli.datasets import dataset_names
    from rsir_cli.models import model_names

    result = run("info", *args, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout, width, list(model_names() if args == ["--models"] else dataset_names()))


# ------------------------------------------------------------------------ commands on a store
def labelled_store(tmp_path: Path, models: tuple[str, ...] = (MODELS[0],), n: int = 12) -> Path:
    """BigEarthNet-like store files: reBEN ids, the 43 labels (the long ones too), 16-d embeddings."""
    root = tmp_path / "store"
    store = EmbeddingStore(root)
    rng = np.random.default_rng(0)
    for model in models:
        for split in ("val", "test"):
            writer = store.writer(
                model, "bigearthnet", split, attrs={"label_names": list(ben.LABELS_43)}, dim=16, n_labels=43,
                rows_expected=n,
            )  # fmt: skip
            labels = (rng.random((n, 43)) < 0.2).astype(np.uint8)
            labels[:, [ben.LABELS_43.index(label) for label in LONG_LABELS]] = 1
            ids = [f"{IDS[i % 4][:-5]}{i:02d}_{split[:2]}" for i in range(n)]  # 50 characters, all different
            writer.append(rng.standard_normal((n, 16)).astype(np.float32), ids, labels)
            writer.finish()
    return root


@pytest.mark.parametrize("width", WIDTHS)
def test_search_cli_ids_whole_in_the_table_and_labels_whole_in_json(tmp_path: Path, width: int) -> None:
    store = labelled_store(tmp_path)
    query = EmbeddingStore(store).read(MODELS[0], "bigearthnet", "val").ids[0]
    args = ("search", "--id", query, "--store", store, "--k", "5")
    document = json.loads(run(*args, "--json").stdout)
    matches = document["results"][0]["matches"]
    assert all(set(LONG_LABELS) <= set(m["labels"]) for m in matches), "labels are whole in --json"
    table = run(*args, env={"COLUMNS": str(width)})
    assert table.exit_code == 0, table.output
    assert_fits(table.stdout, width, [query, *(m["id"] for m in matches)])
    # The labels cell: on the match's line in a table, on a "labels" line of its block otherwise.
    ids = {m["id"] for m in matches}
    lines = table.stdout.splitlines()
    in_blocks = [line for line in lines if line.startswith("labels ")]
    labels = in_blocks or [line for line in lines if any(i in line for i in ids)]
    assert len(labels) == len(matches), "one line of labels per match"
    if width <= 80:
        assert all(line.endswith("…") for line in labels)
        assert not any(max(LONG_LABELS, key=len) in line for line in labels)


@pytest.mark.parametrize("width", (60, 80))
def test_info_and_hash_tables_of_a_store_fit(tmp_path: Path, width: int) -> None:
    store = labelled_store(tmp_path)
    env = {"COLUMNS": str(width)}
    hashed = run("hash", "--method", "lsh", "--bits", "32", "--seeds", "3", "--store", store, env=env)
    assert hashed.exit_code == 0, hashed.output
    assert_fits(hashed.stdout, width, [MODELS[0], "bigearthnet"])
    info = run("info", "--store", store, env=env)
    assert info.exit_code == 0, info.output
    assert_fits(info.stdout, width, [MODELS[0], "bigearthnet"])


def test_embed_table_fits(tmp_path: Path, ben_root: Path, fake_encoder: str, width: int = 60) -> None:
    args = ("embed", "-m", fake_encoder, "--random-weights", "-d", "bigearthnet", "--data-dir", ben_root)
    result = run(*args, "--store", tmp_path / "store", "--workers", "0", env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout, width, [fake_encoder, "bigearthnet", "val", "test"])


def test_index_table_fits(tmp_path: Path) -> None:
    store = labelled_store(tmp_path, n=20)
    uri = tmp_path / "a-folder-with-a-long-name-as-users-have" / "milvus.db"
    uri.parent.mkdir()
    result = run("index", "-m", MODELS[0], "-d", "bigearthnet", "--float", "--uri", uri, "--store", store,
                 env={"COLUMNS": "60"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout, 60, [str(uri.absolute()), "rsir_prithvi_eo2_300m_tl_bigearthnet_test_float_l2"])
    assert re.search(r"^rows +20$", result.stdout, re.MULTILINE), "one name  value line per row"


# ------------------------------------------------------------------------ the layout itself
def test_kinds_are_checked_and_text_wraps_between_words() -> None:
    with pytest.raises(ValueError, match="unknown column kind"):
        output.make_table(None, ["a"], [["x"]], kinds={"a": "identifier"})
    words = "a few words that wrap between words and never inside " + IDS[0]
    text = render(output.make_table(None, ["id", "note"], [[IDS[1], words]], kinds={"id": "id"}), 80)
    assert_fits(text, 80, [IDS[0], IDS[1], "between", "inside"])
    assert not any(IDS[0] in line and "inside" in line for line in text.splitlines()), "the note wrapped"


def test_numbers_are_right_aligned() -> None:
    text = render(output.make_table(None, ["name", "rows"], [["a", "1"], ["b", "12,345"]], numeric=("rows",)), 80)
    one, many = (line for line in text.splitlines() if re.search(r"\b(1|12,345)\b", line))
    assert one.index("1 ") + 1 == many.index("5 ") + 1, (one, many)


# ------------------------------------------------------------------------ progress bars
@pytest.mark.parametrize("width", (80, 120))
def test_progress_descriptions_and_counts_stay_whole(width: int) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width)
    progress = output.FittingProgress(console)
    rich_progress = output.RichProgress(progress)
    descriptions = ["evaluate (8 searches per dataset)", "verify BigEarthNet-S2-v1.0.tar.gz", "embedding tile.tif"]
    rich_progress.task(descriptions[0], total=5000, unit="queries").advance(1234)
    rich_progress.task(descriptions[1], total=66e9, unit="B").advance(12.3e9)
    rich_progress.task(descriptions[2], total=256, unit="chip").advance(3)
    console.print(progress.make_tasks_table(progress.tasks))
    text = buffer.getvalue()
    assert len(text.splitlines()) == 3
    assert_fits(text, width, [*descriptions, "1234/5000", "12.3 GB/66.0 GB", "3/256"])
    assert "…" not in text  # nothing is cut: columns that do not fit are left out whole
    if width == 120:
        assert "queries/s" in text and "ETA" in text
