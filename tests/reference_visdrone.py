"""A literal, slow transcription of the VisDrone MATLAB toolkit 1.0.4, for tests only.

saveAnnoRes.m, dropObjectsInIgr.m, createIntImg.m, calcAccuracy.m, evalRes.m,
compOas.m, VOCap.m: loops everywhere, MATLAB's 1-based indices kept (``M(i, j)``
is ``M[i - 1][j - 1]``), nothing shared with afmcli.evaluation. Only change:
an empty result file means no detections (MATLAB's load would crash).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# 0.5:0.05:0.95 as MATLAB builds it (symmetric colon: the 7th and 9th values
# are b - 3d and b - d, which are 0.7999999999999999 and 0.8999999999999999).
THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.7999999999999999, 0.85, 0.8999999999999999, 0.95]


def mround(v: float) -> float:
    """MATLAB round: half away from zero (Decimal(v) is the exact binary value)."""
    return float(Decimal(v).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def create_int_img(img):
    height, width = len(img), len(img[0])
    I = [row[:] for row in img]
    for i in range(2, height + 1):
        I[i - 1][0] = I[i - 1][0] + I[i - 2][0]
    for j in range(2, width + 1):
        I[0][j - 1] = I[0][j - 1] + I[0][j - 2]
    for i in range(2, height + 1):
        for j in range(2, width + 1):
            I[i - 1][j - 1] = I[i - 1][j - 1] + I[i - 2][j - 1] + I[i - 1][j - 2] - I[i - 2][j - 2]
    return I


def drop_objects_in_igr(gt, det, img_height, img_width):
    curgt = [row for row in gt if row[5] != 0]
    igr_region = [[max(1, v) for v in row[0:4]] for row in gt if row[5] == 0]
    if igr_region:
        igr_map = [[0.0] * img_width for _ in range(img_height)]
        for x, y, w, h in igr_region:
            for r in range(int(y), int(min(img_height, y + h)) + 1):
                for c in range(int(x), int(min(img_width, x + w)) + 1):
                    igr_map[r - 1][c - 1] = 1.0
        I = create_int_img(igr_map)

        def at(r, c):
            return I[int(r) - 1][int(c) - 1]

        def left(rows):
            kept = []
            for row in rows:
                pos = [max(1, mround(v)) for v in row[0:4]]
                x = max(1, min(img_width, pos[0]))
                y = max(1, min(img_height, pos[1]))
                w = pos[2]
                h = pos[3]
                tl = at(y, x)
                tr = at(y, min(img_width, x + w))
                bl = at(max(1, min(img_height, y + h)), x)
                br = at(max(1, min(img_height, y + h)), min(img_width, x + w))
                igr_val = tl + br - tr - bl
                if igr_val / (h * w) < 0.5:
                    kept.append(row)
            return kept

        curgt = left(curgt)
        det = left(det)
    return curgt, det


def save_anno_res(images):
    """images: [(gt rows, det rows, height, width)] -> allgt, alldet (score -> ignore flag)."""
    allgt, alldet = [], []
    for oldgt, olddet, height, width in images:
        newgt, det = drop_objects_in_igr([list(map(float, r)) for r in oldgt],
                                         [list(map(float, r)) for r in olddet], height, width)
        gt = [r[:] for r in newgt]
        for i, r in enumerate(newgt):
            if r[4] == 0:
                gt[i][4] = 1.0
            if r[4] == 1:
                gt[i][4] = 0.0
        allgt.append(gt)
        alldet.append(det)
    return allgt, alldet


def comp_oas(dt, gt, ig):
    m, n = len(dt), len(gt)
    oa = [[0.0] * n for _ in range(m)]
    de = [[d[0] + d[2], d[1] + d[3]] for d in dt]
    da = [d[2] * d[3] for d in dt]
    ge = [[g[0] + g[2], g[1] + g[3]] for g in gt]
    ga = [g[2] * g[3] for g in gt]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            w = min(de[i - 1][0], ge[j - 1][0]) - max(dt[i - 1][0], gt[j - 1][0])
            if w <= 0:
                continue
            h = min(de[i - 1][1], ge[j - 1][1]) - max(dt[i - 1][1], gt[j - 1][1])
            if h <= 0:
                continue
            t = w * h
            if ig[j - 1]:
                u = da[i - 1]
            else:
                u = da[i - 1] + ga[j - 1] - t
            oa[i - 1][j - 1] = t / u
    return oa


def eval_res(gt0, dt0, thr):
    nd, ng = len(dt0), len(gt0)
    # MATLAB sort is stable; Python's sorted too, also with reverse=True.
    dt0 = [dt0[i] for i in sorted(range(nd), key=lambda i: dt0[i][4], reverse=True)]
    gt0 = [gt0[j] for j in sorted(range(ng), key=lambda j: gt0[j][4])]
    gt = [g[:] for g in gt0]
    dt = [d[:] + [0.0] for d in dt0]
    for g in gt:
        g[4] = -g[4]
    oa = comp_oas([d[0:4] for d in dt], [g[0:4] for g in gt], [g[4] == -1 for g in gt])
    for d in range(1, nd + 1):
        bst_oa = thr
        bstg = 0
        bstm = 0
        for g in range(1, ng + 1):
            m = gt[g - 1][4]
            if m == 1:
                continue
            if bstm != 0 and m == -1:
                break
            if oa[d - 1][g - 1] < bst_oa:
                continue
            bst_oa = oa[d - 1][g - 1]
            bstg = g
            bstm = 1 if m == 0 else -1
        g, m = bstg, bstm
        if m == -1:
            dt[d - 1][5] = m
        elif m == 1:
            gt[g - 1][4] = m
            dt[d - 1][5] = m
    return gt, dt


def voc_ap(rec, prec):
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    idx = [i + 1 for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]]
    ap = 0.0
    for i in idx:
        ap = ap + (mrec[i - 1] - mrec[i - 2]) * mpre[i - 1]
    return ap


def mean2(matrix_columns):
    """sum(x(:)) / numel(x): column by column, left to right."""
    total, count = 0.0, 0
    for column in matrix_columns:
        for v in column:
            total = total + v
            count += 1
    return total / count if count else float("nan")


def calc_accuracy(num_imgs, allgt, alldet, max_dets=(1, 10, 100, 500)):
    AP = [[0.0] * 10 for _ in range(10)]
    AR = [[[0.0] * len(max_dets) for _ in range(10)] for _ in range(10)]
    eval_class = []
    for id_class in range(1, 11):
        for id_img in range(1, num_imgs + 1):
            if any(r[5] == id_class for r in allgt[id_img - 1]):
                eval_class.append(id_class)
        for x, thr in enumerate(THRESHOLDS, start=1):
            for y, max_det in enumerate(max_dets, start=1):
                gt_match, det_match = [], []
                for id_img in range(1, num_imgs + 1):
                    gt = allgt[id_img - 1]
                    det = alldet[id_img - 1]
                    gt0 = [r[0:5] for r in gt if r[5] == id_class]
                    dt0 = [r[0:5] for r in det[0:min(len(det), max_det)] if r[5] == id_class]
                    gt1, dt1 = eval_res(gt0, dt0, thr)
                    gt_match += [g[4] for g in gt1]
                    det_match += [d[4:6] for d in dt1]
                idrank = sorted(range(len(det_match)), key=lambda i: -det_match[i][0])
                tp, rec, count = [], [], 0
                for i in idrank:
                    count += det_match[i][1] == 1
                    tp.append(float(count))
                rec = [t / max(1, len(gt_match)) for t in tp]
                if rec:
                    AR[id_class - 1][x - 1][y - 1] = max(rec) * 100
            fp, count = [], 0
            for i in idrank:
                count += det_match[i][1] == 0
                fp.append(float(count))
            prec = [t / max(1, f + t) for t, f in zip(tp, fp)]
            AP[id_class - 1][x - 1] = voc_ap(rec, prec) * 100
    rows = [c - 1 for c in eval_class]
    stats = {
        "AP": mean2([[AP[r][t] for r in rows] for t in range(10)]),
        "AP50": mean2([[AP[r][0] for r in rows]]),
        "AP75": mean2([[AP[r][5] for r in rows]]),
    }
    for y, max_det in enumerate(max_dets):
        stats[f"AR{max_det}"] = mean2([[AR[r][t][y] for r in rows] for t in range(10)])
    return stats, AP, AR


def evaluate(images, max_dets=(1, 10, 100, 500)):
    """images: [(gt rows, det rows, height, width)] -> (stats, AP[10][10], AR[10][10][k])."""
    allgt, alldet = save_anno_res(images)
    return calc_accuracy(len(images), allgt, alldet, max_dets)
