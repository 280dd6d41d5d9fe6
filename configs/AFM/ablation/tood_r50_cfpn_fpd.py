# Ablation step 2: + FPD mask estimators (loss_mask_s / loss_mask_l as a second task; without
# AFFM no mask modulates a feature yet). No HD head.
_base_ = '../AFMNet-tood_r50_k13.py'
model = dict(p2_neck=None, affm=None, irfi=None, hd_head=None)
