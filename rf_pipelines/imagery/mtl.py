"""Landsat MTL metadata: the ODL text form and the JSON form, Collection 1 and 2, read into
one flat dict of field -> value (strings and numbers as the file gives them)."""

import json
import re

from rf_pipelines.errors import InvalidInput

_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.*?)\s*$")
ROOTS = ("LANDSAT_METADATA_FILE", "L1_METADATA_FILE")  # Collection 2, Collection 1


def parse_text(text, label):
    """Parses an ODL ``_MTL.txt`` into nested dicts.

    The file is complete once its top-level group closes: the ``END`` line that should follow
    is missing from some real files (a Landsat 9 MTL among them), and is not required.

    Args:
        text: the file's content.
        label: the file's name, for messages.

    Returns:
        dict: {root group: {group: {field: value}}}; quoted values are strings, others are
        left as written (numbers are converted by ``number``).

    Raises:
        InvalidInput: a malformed line, unbalanced groups, or a group left open at the end
        of the file (a truncated file).
    """
    stack = [{}]
    names = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.strip() == "END":
            if names:
                raise InvalidInput(f"{label}: END inside GROUP {names[-1]} (line {lineno})")
            return stack[0]
        match = _LINE.match(line)
        if not match:
            raise InvalidInput(f"{label}: line {lineno} is not KEY = VALUE: {line.strip()!r}")
        key, value = match.groups()
        if key == "GROUP":
            group = {}
            stack[-1][value] = group
            stack.append(group)
            names.append(value)
        elif key == "END_GROUP":
            if not names or names[-1] != value:
                raise InvalidInput(
                    f"{label}: END_GROUP = {value} does not close a group (line {lineno})"
                )
            stack.pop()
            names.pop()
        else:
            stack[-1][key] = value[1:-1] if value.startswith('"') and value.endswith('"') else value
    if names:
        raise InvalidInput(
            f"{label}: GROUP {names[-1]} is not closed at the end of the file (truncated?)"
        )
    return stack[0]


def parse_json(text, label):
    """Parses an ``_MTL.json``.

    Raises:
        InvalidInput: not JSON, or not an object.
    """
    try:
        value = json.loads(text)
    except ValueError as err:
        raise InvalidInput(f"{label}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise InvalidInput(f"{label}: the JSON is not an object")
    return value


def flatten(document, label):
    """The fields of an MTL document's root group, all groups merged into one dict (the first
    occurrence of a field wins).

    Raises:
        InvalidInput: neither LANDSAT_METADATA_FILE (C2) nor L1_METADATA_FILE (C1) at the root.
    """
    for root in ROOTS:
        if root in document:
            product = document[root].get("PRODUCT_CONTENTS") or document[root].get(
                "PRODUCT_METADATA", {}
            )
            # The band files of this product (an L2 MTL also lists its L1 source's files).
            flat = {
                "_root": root,
                "_band_files": {
                    k: v for k, v in product.items() if k.startswith("FILE_NAME_BAND_")
                },
            }
            for group in document[root].values():
                if isinstance(group, dict):
                    # The first group wins: C2's PRODUCT_CONTENTS names the L2 product, its
                    # LEVEL1_PROCESSING_RECORD repeats the fields for the L1 source.
                    for key, value in group.items():
                        flat.setdefault(key, value)
            return flat
    raise InvalidInput(f"{label}: no {' or '.join(ROOTS)} group: not a Landsat MTL file")


def parse(text, label):
    """Parses either form (by content) and flattens it; see ``parse_text`` and ``flatten``."""
    stripped = text.lstrip()
    document = parse_json(text, label) if stripped.startswith("{") else parse_text(text, label)
    return flatten(document, label)
