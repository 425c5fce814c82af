"""The shipped SysToolKit: size, fields, grounding in Android APIs, validity, spec sync."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from retrieval.catalog import Catalog, load_catalog, parse_records
from retrieval.catalog_data import DATA_DIR, build_records, category_schema
from retrieval.retriever import Retriever
from retrieval.validate import check_catalog, near_duplicates, validate_catalog
from toolrec.errors import RetrievalError

from .conftest import records


def test_size_and_categories(catalog: Catalog) -> None:
    assert len(catalog) >= 708
    assert len(catalog.categories) >= 20
    assert len({t.id for t in catalog.tools}) == len(catalog)


def test_every_record_has_every_field(catalog: Catalog) -> None:
    for tool in catalog.tools:
        assert tool.name and tool.description and tool.category
        assert len(tool.examples) >= 3
        assert tool.action.target
        assert isinstance(tool.confirm, bool)


def test_grounded_in_android_apis(catalog: Catalog) -> None:
    targets = Counter()
    for tool in catalog.tools:
        a = tool.action
        targets[a.kind] += 1
        targets[a.target] += 1
    assert targets["settings"] >= 60 and targets["panel"] == 4
    for action in ("android.intent.action.SET_ALARM", "android.intent.action.SET_TIMER",
                   "android.media.action.STILL_IMAGE_CAMERA", "android.intent.action.INSERT",
                   "android.intent.action.CALL", "android.intent.action.SENDTO",
                   "android.media.action.MEDIA_PLAY_FROM_SEARCH"):
        assert targets[action] >= 1, action
    assert {"launch", "deeplink", "api", "setting", "media_key", "matter"} <= set(targets)


def test_confirmation_on_risky_tools(catalog: Catalog) -> None:
    for tool_id in ("phone.call", "wallet.send_money", "gallery.delete", "system.reset_options",
                    "messaging.sms.send", "home.lock.unlock"):
        assert catalog.get(tool_id).confirm, tool_id
    assert not catalog.get("display.brightness.down").confirm


def test_shipped_catalog_is_structurally_valid(catalog: Catalog) -> None:
    assert check_catalog(catalog) == []


def test_shipped_catalog_has_no_near_duplicates(catalog: Catalog, retriever: Retriever) -> None:
    index = retriever.index
    vectors = index.phrases[index.starts[:-1] + 1]  # descriptions
    report = validate_catalog(catalog, vectors=vectors, threshold=0.95)
    assert report.ok, report.near_duplicates[:5]


def test_data_file_matches_the_category_files(catalog: Catalog) -> None:
    """The shipped JSON is exactly what `toolrec tools build-catalog` compiles."""
    assert [t.model_dump(mode="json") for t in catalog.tools] == [
        parse_records([r], source="data").tools[0].model_dump(mode="json")
        for r in build_records()
    ]


def test_one_data_file_per_category_and_schema_pinned(catalog: Catalog) -> None:
    files = {p.stem for p in DATA_DIR.glob("*.json")} - {"order", "schema"}
    assert files == set(catalog.categories)
    assert json.loads((DATA_DIR / "schema.json").read_text()) == category_schema()
    families = {p.stem for p in (DATA_DIR / "families").glob("*.json")}
    assert families == {"volume", "launchers"}
    assert sum(t.id.startswith("sound.volume.") and t.id.count(".") == 3
               for t in catalog.tools) == 25


def test_family_and_schema_errors_name_the_file(tmp_path) -> None:
    import shutil

    data = tmp_path / "catalog"
    shutil.copytree(DATA_DIR, data)
    fam = json.loads((data / "families" / "volume.json").read_text())
    del fam["instances"]["sound.volume.media.up"]
    (data / "families" / "volume.json").write_text(json.dumps(fam))
    with pytest.raises(RetrievalError, match="no instance for 'sound.volume.media.up'"):
        build_records(data)
    shutil.copy(DATA_DIR / "families" / "volume.json", data / "families" / "volume.json")
    (data / "clock.json").write_text(json.dumps({"category": "clock", "tools": [{"id": 1}]}))
    with pytest.raises(RetrievalError, match="clock.json does not match its schema"):
        build_records(data)


def test_get_unknown_id_names_neighbours(catalog: Catalog) -> None:
    with pytest.raises(RetrievalError, match="clock.alarm.set"):
        catalog.get("clock.alarm.sett")


def test_malformed_record_fails_loading_with_its_id(catalog: Catalog) -> None:
    bad = records(catalog, ["clock.alarm.set"])
    bad[0]["action"]["kind"] = "telepathy"
    with pytest.raises(RetrievalError, match="clock.alarm.set.*action.kind"):
        parse_records(bad, source="test")


def test_validator_reports_each_kind_of_problem(catalog: Catalog) -> None:
    recs = records(catalog, ["clock.alarm.set", "clock.timer.set", "phone.call"])
    recs[1]["id"] = "clock.alarm.set"  # duplicate id
    recs[0]["params"].append({"name": "volume", "type": "integer", "required": False,
                              "min": 10, "max": 1})  # empty range, unused
    recs[0]["action"]["extras"]["x"] = "{nonexistent}"  # undeclared placeholder
    recs[2]["context"] = ["sunny"]  # unknown hint
    recs[2]["examples"] = ["call mom", "Call mom!"]  # too few distinct
    recs[2]["description"] = "Calls. It rings"
    codes = Counter(p.code for p in check_catalog(parse_records(recs, source="t"),
                                                  min_tools=1, min_categories=1))
    assert codes["duplicate-id"] == 1
    assert codes["param"] >= 3
    assert codes["context"] == 1
    assert codes["examples"] == 2
    assert codes["description"] == 1


def test_validator_counts_tools_and_categories(small_catalog: Catalog) -> None:
    codes = {p.code for p in check_catalog(small_catalog)}
    assert {"too-few-tools", "too-few-categories"} <= codes


def test_near_duplicates_threshold(small_catalog: Catalog) -> None:
    vectors = np.eye(len(small_catalog), dtype=np.float32)
    vectors[1] = vectors[0]
    pairs = near_duplicates(small_catalog, vectors, 0.95)
    assert pairs == [(small_catalog.tools[0].id, small_catalog.tools[1].id, 1.0)]


def test_catalog_file_loads_from_a_path(tmp_path, catalog: Catalog) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"tools": records(catalog, ["phone.call"])}))
    assert load_catalog(path).get("phone.call").confirm
    with pytest.raises(RetrievalError, match="does not exist"):
        load_catalog(tmp_path / "missing.json")


@pytest.mark.parametrize("action, why", [
    ({"kind": "api", "target": "FilesApp.compress"}, "not a known Android platform class"),
    ({"kind": "api", "target": "Maps.stopNavigation"}, "not a known Android platform class"),
    ({"kind": "intent", "target": "com.example.app.DO_IT"}, "neither in an Android SDK"),
    ({"kind": "matter", "target": "SecurityMode.Arm"}, "not a known Matter cluster"),
    ({"kind": "capability", "target": "uber.book"}, "is not registered"),
    ({"kind": "launch", "target": "android.intent.action.MAIN",
      "package": "$DEFAULT_BANKING_APP"}, "launch needs an Android package name"),
])
def test_validator_rejects_unknown_action_targets(catalog: Catalog, action: dict[str, str],
                                                  why: str) -> None:
    rec = records(catalog, ["system.screenshot"])[0]
    rec["action"] = action
    problems = check_catalog(parse_records([rec], source="t"), min_tools=1, min_categories=1)
    assert any(p.code == "action" and why in p.message for p in problems), problems


def test_every_action_is_a_known_target_or_capability(catalog: Catalog) -> None:
    """Issue 14: no pseudo-targets, no placeholder packages, no hard-wired provider brands
    for provider-neutral requests."""
    kinds = Counter(t.action.kind for t in catalog.tools)
    assert kinds["capability"] >= 30
    assert not [t.id for t in catalog.tools if (t.action.package or "").startswith("$")]
    for tool_id in ("navigation.ride", "apps.uber_eats.order", "apps.open.bank"):
        assert catalog.get(tool_id).action.kind == "capability", tool_id
    on = {catalog.get(i).action.args.get("device_type")
          for i in ("home.lights.on", "home.plug.on", "home.tv.on")}
    assert len(on) == 3  # one OnOff command, three device types
