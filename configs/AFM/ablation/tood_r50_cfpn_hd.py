# Ablation step 2: + HD head (stride 4), dense on the whole P2 map (no AFFM windows yet).
_base_ = '../AFMNet-tood_r50_k13.py'
model = dict(mask_estimator=None, affm=None, irfi=None)
