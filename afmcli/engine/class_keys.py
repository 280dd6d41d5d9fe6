"""The ``num_classes`` keys of a model config: the one place they are found and set, for
`afm train --data` (the data's classes), the fine-tuning hook and inference (the
checkpoint's classes). Plain dicts and lists: no mmdet import."""

from __future__ import annotations

# Class-agnostic parts whose num_classes is not the data's (a two-stage detector's RPN: 1).
CLASS_AGNOSTIC = ("rpn_head",)


def set_num_classes(node, num_classes: int) -> int:
    """Set every ``num_classes`` key in a (nested) config to ``num_classes`` (not inside
    CLASS_AGNOSTIC parts); how many there were."""
    found = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = num_classes
                found += 1
            elif key not in CLASS_AGNOSTIC:
                found += set_num_classes(value, num_classes)
    elif isinstance(node, (list, tuple)):
        found += sum(set_num_classes(item, num_classes) for item in node)
    return found


def num_classes_in(node) -> list[int]:
    """Every ``num_classes`` value in a (nested) config (not inside CLASS_AGNOSTIC parts)."""
    if isinstance(node, dict):
        return [v for key, value in node.items() if key not in CLASS_AGNOSTIC
                for v in ([int(value)] if key == "num_classes" else num_classes_in(value))]
    if isinstance(node, (list, tuple)):
        return [v for item in node for v in num_classes_in(item)]
    return []
