# AFMNet trained on crops of the training images (the published "MCP" data, SAHI-style
# slice fine-tuning): the <split>_sliced set of `afm convert-visdrone --slice`.
# Validation stays on the full val images.
_base_ = './AFMNet-tood_r50_k13.py'
train_dataloader = dict(
    dataset=dict(
        ann_file='labels/annotations/train_sliced_labels.json',
        data_prefix=dict(img='images/train_sliced/')))
