"""A person's name as people write it, from the family name and the given name a directory keeps
(LDAP ``sn`` and ``givenName``, RFC 4519 sections 2.32 and 2.12).

A name in Chinese characters is written family name first without a space (张伟, GB/T 28039-2011
section 5 on writing Chinese names, which puts the family name first); a name in Latin script
given name first with a space ("Kadri Tamm"), as the directory's other entries are.

The common Chinese family and given names below make the generated staff of load tests and the
demo citizens of the card simulator (:func:`name_parts`).
"""

from __future__ import annotations

import unicodedata


def is_han(text: str) -> bool:
    """Whether ``text`` holds a Chinese character (a CJK unified or compatibility ideograph)."""
    return any(unicodedata.name(c, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))
               for c in text)


def written_name(given: str, family: str) -> str:
    """张伟 from ("伟", "张"); "Kadri Tamm" from ("Kadri", "Tamm"); whichever part is given alone."""
    given, family = given.strip(), family.strip()
    if is_han(given) or is_han(family):
        return family + given
    return f"{given} {family}".strip()


#: common family names (百家姓 frequency order) with their pinyin
SURNAMES = (("王", "Wang"), ("李", "Li"), ("张", "Zhang"), ("刘", "Liu"), ("陈", "Chen"), ("杨", "Yang"),
            ("黄", "Huang"), ("赵", "Zhao"), ("吴", "Wu"), ("周", "Zhou"), ("徐", "Xu"), ("孙", "Sun"),
            ("马", "Ma"), ("朱", "Zhu"), ("胡", "Hu"), ("郭", "Guo"), ("何", "He"), ("林", "Lin"),
            ("罗", "Luo"), ("彭", "Peng"), ("向", "Xiang"), ("田", "Tian"), ("欧阳", "Ouyang"))
#: common given names with their pinyin
GIVEN_NAMES = (("伟", "Wei"), ("芳", "Fang"), ("娜", "Na"), ("秀英", "Xiuying"), ("敏", "Min"), ("静", "Jing"),
               ("丽", "Li"), ("强", "Qiang"), ("磊", "Lei"), ("军", "Jun"), ("洋", "Yang"), ("勇", "Yong"),
               ("艳", "Yan"), ("杰", "Jie"), ("娟", "Juan"), ("涛", "Tao"), ("明", "Ming"), ("超", "Chao"),
               ("秀兰", "Xiulan"), ("霞", "Xia"), ("平", "Ping"), ("刚", "Gang"), ("桂英", "Guiying"))


def name_parts(i: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """((family name, its pinyin), (given name, its pinyin)) of person ``i``: the same every time."""
    return SURNAMES[i % len(SURNAMES)], GIVEN_NAMES[(i // len(SURNAMES) + i) % len(GIVEN_NAMES)]
