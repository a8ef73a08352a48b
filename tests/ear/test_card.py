"""The model card: both probe splits with the paper's Table 2 beside them, and the music heard kept
when only the probes change."""

import json

from earengine.ear.card import PAPER_TABLE2, write_card
from earengine.ear.checkpoint import save_ear
from earengine.ear.model import EarConfig, build_ear
from earengine.ear.probe import ProbeConfig, format_probe_table, write_probe


def _result(task: str, split: str, cpc: float, random: float, supervised: float) -> dict:
    rows = [{"model": m, "train_accuracy": 0.9, "heldout_accuracy": a, "heldout_loss": 1.0, "weight_decay": 0.1}
            for m, a in (("cpc", cpc), ("random", random), ("supervised", supervised))]
    rows[0]["contrast"] = "across time steps"
    n = {"tracks": 4, "composers": 2}[task]
    return {"task": task, "split": split, "config": ProbeConfig().to_dict(),
            "n_tracks" if task == "tracks" else "n_classes": n, "classes": [f"c{i}" for i in range(n)],
            "train_clips": 8, "heldout_clips": 8, "chance": 1 / n, "init_seed": 0, "data": {}, "rows": rows}


def test_card_shows_both_splits_beside_the_paper_and_keeps_the_music_heard(tmp_path):
    ear, head = build_ear(EarConfig.preset("small", width=1 / 64), seed=0)
    save_ear(tmp_path, ear.eval(), head, info={"data": {"kind": "none"}, "training": {"seed": 0}})
    results = [_result("tracks", "held-out", 0.5, 0.25, 0.3), _result("tracks", "random", 0.75, 0.3, 0.6),
               _result("composers", "held-out", 0.625, 0.5, 0.5), _result("composers", "random", 0.875, 0.5, 0.5)]
    for r in results:
        write_probe(tmp_path, r)
    assert set(json.loads((tmp_path / "config.json").read_text())["probes"]) == {
        "tracks", "tracks:random", "composers", "composers:random"}
    heard = "## Music heard\n\n3 tracks, by someone, under some license.\n"
    (tmp_path / "README.md").write_text("# old card\n\n" + heard)
    write_card(tmp_path, name="tiny", commands=["earengine probe --split random"])
    card = (tmp_path / "README.md").read_text()
    for r in results:
        assert format_probe_table(r) in card
    assert card.endswith(heard) and "# old card" not in card
    assert "### Track identification, clips split at random (the paper's protocol)" in card
    assert "This ear: 75.0% on evaluation clips, 15.0 points above the better of the two baselines." in card
    assert ("| Track identification: 4 here, 15 house tracks in the paper | random clips (the paper's protocol) "
            "| 75.0 % | 30.0 % | 60.0 % | 90.44 % / 91.81 % | 48.25 % |") in card
    assert ("| Composer identification: 2 here, MAESTRO composers in the paper | held-out: whole works "
            "| 62.5 % | 50.0 % | 50.0 % |  |  |") in card
    assert PAPER_TABLE2["composers"]["sat"] == 0.7590


def test_card_without_random_probes_has_no_comparison(tmp_path):
    ear, head = build_ear(EarConfig.preset("small", width=1 / 64), seed=0)
    save_ear(tmp_path, ear.eval(), head, info={"data": {"kind": "none"}, "training": {"seed": 0}})
    write_probe(tmp_path, _result("tracks", "held-out", 0.5, 0.25, 0.3))
    write_card(tmp_path, name="tiny", commands=[])
    card = (tmp_path / "README.md").read_text()
    assert "### Track identification\n" in card and "Beside the paper" not in card
    assert "## Music heard" not in card
