# Ablation step 1: TOOD + CFPN (no HD head, no masks, no AFFM, no IRFI).
_base_ = '../AFMNet-tood_r50_k13.py'
model = dict(p2_neck=None, mask_estimator=None, affm=None, irfi=None, hd_head=None)
