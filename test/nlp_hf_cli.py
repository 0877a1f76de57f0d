"""A transformers model through `koba lm import` and back out through `koba lm export`, as a user runs them: shared
by the tests of each imported family."""
import json

from koba_ros.cli import main


def through_import_and_export(hf, tmp_path, capsys) -> tuple[dict, dict, dict]:
    """(import's JSON, export's JSON, the exported config.json) of `hf` saved, imported with the byte tokenizer and
    exported again; each command must succeed and the import's logits must match within 1e-5."""
    hf.save_pretrained(tmp_path / "hf")
    assert main(["lm", "import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "in"), "--tokenizer", "byte",
                 "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["max_logit_difference"] < 1e-5
    assert main(["lm", "export", "--checkpoint", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    return imported, exported, json.loads((tmp_path / "out" / "config.json").read_text())
