# Ablation step 3: + FPD mask estimators (trained with loss_mask_s / loss_mask_l).
_base_ = '../AFMNet-tood_r50_k13.py'
model = dict(affm=None, irfi=None)
