# The authors' recipe: AFMNet trained on multi-scale crops of the training images (their
# "VisDrone2019_mcp" data root; SAHI-style slice fine-tuning) and validated on the full
# val images. Write the crops with
#   afm convert-visdrone VisDrone2019-DET-train Datasets --split train \
#       --slice 512 --slice 640 --slice 800
# (the <split>_sliced set); AFMNet-tood_r50_k13_sliced_full.py also mixes in the full images.
_base_ = './AFMNet-tood_r50_k13.py'
train_dataloader = dict(
    dataset=dict(
        ann_file='labels/annotations/train_sliced_labels.json',
        data_prefix=dict(img='images/train_sliced/')))
