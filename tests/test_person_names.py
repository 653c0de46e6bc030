"""Names written as people write them (directory.person_names), and the password rule on names for
Chinese names, whose parts are one or two characters."""

from __future__ import annotations

import pytest

from idp.password_policy import problems
from directory.person_names import is_han, written_name

NAME_RULE = "The password may not contain your user name or your name."


@pytest.mark.parametrize(("given", "family", "written"), [
    ("伟", "张", "张伟"), ("秀英", "欧阳", "欧阳秀英"), ("Kadri", "Tamm", "Kadri Tamm"), ("", "王", "王"),
    ("Fang", "", "Fang"), (" 芳 ", "王", "王芳"), ("𠀋", "李", "李𠀋"),  # CJK extension B
])
def test_written_name(given: str, family: str, written: str) -> None:
    assert written_name(given, family) == written


def test_is_han() -> None:
    assert is_han("王") and is_han("a张") and not is_han("Wang") and not is_han("") and not is_han("ｗａｎｇ")


@pytest.mark.parametrize("password", ["张伟-Mountain-2026", "Blue-张伟-lake-77"])
def test_a_chinese_name_in_the_password_is_refused(password: str) -> None:
    assert NAME_RULE in problems(password, "zhangwei", ["伟", "张"])


def test_one_character_of_a_name_alone_is_not_a_name() -> None:
    """张 or 伟 alone is too common a character to refuse a password for."""
    assert NAME_RULE not in problems("张-Mountain-lake-2026", "zhangwei", ["伟", "张"])
    assert NAME_RULE in problems("Zhangwei-Mountain-2026", "zhangwei", ["伟", "张"])  # the user name
