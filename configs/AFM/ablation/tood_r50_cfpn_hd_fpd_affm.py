# Ablation step 4: + AFFM (mask-enhanced P2/P4, HD head on the top-13 windows).
# Step 5, + IRFI, is the full model: ../AFMNet-tood_r50_k13.py.
_base_ = '../AFMNet-tood_r50_k13.py'
model = dict(irfi=None)
