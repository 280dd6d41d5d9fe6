"""Last step of setup: mmcv must have come out with its compiled ops."""

import sys


def main() -> int:
    try:
        import torch
        from mmcv.ops import nms

        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        _, keep = nms(boxes, scores, 0.5)
    except Exception as exc:  # any failure here means a broken build
        print(
            f"setup: mmcv's compiled ops do not run ({type(exc).__name__}: {exc}).\n"
            "mmcv was probably built without ops (a build with isolation does that silently).\n"
            "Remove the cached wheel (~/.cache/afmcli/wheels) and run `make install` again.",
            file=sys.stderr,
        )
        return 1
    if keep.tolist() != [0, 2]:
        print(f"setup: mmcv.ops.nms gave {keep.tolist()}, expected [0, 2]", file=sys.stderr)
        return 1
    print(f"setup: ok (torch {torch.__version__}, mmcv.ops.nms runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
