"""The data key read below every package that derives a key from it (store.data_key)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from cardsim.config import CardSettings
from cardsim.errors import CardConfigurationError
from store.data_key import DataKeyError, data_key_file, load_data_key

KEY = bytes(range(32))


def test_the_setting_wins_over_the_file(tmp_path: Path) -> None:
    path = data_key_file(tmp_path)
    path.parent.mkdir()
    path.write_text(base64.b64encode(b"\1" * 32).decode() + "\n")
    assert load_data_key(None, path) == b"\1" * 32
    assert load_data_key(base64.b64encode(KEY).decode(), path) == KEY


@pytest.mark.parametrize("encoded", ["", "not base64!", base64.b64encode(b"short").decode(),
                                     base64.b64encode(KEY + b"x").decode()])
def test_anything_but_32_bytes_is_refused(tmp_path: Path, encoded: str) -> None:
    with pytest.raises(DataKeyError, match="32 bytes"):
        load_data_key(encoded, tmp_path / "unused")


def test_a_missing_key_names_the_file_and_reaches_the_card_layer_as_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(DataKeyError, match="idp-data.key missing"):
        load_data_key(None, data_key_file(tmp_path))
    with pytest.raises(CardConfigurationError, match="no data key"):
        CardSettings.from_env(tmp_path, {}).pseudonym_key()
    key = CardSettings.from_env(tmp_path, {"TESSERA_DATA_KEY": base64.b64encode(KEY).decode()}).pseudonym_key()
    assert len(key) == 32 and key != KEY
