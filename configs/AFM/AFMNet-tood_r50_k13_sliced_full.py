# AFMNet-tood_r50_k13_sliced.py with the full training images mixed in: the multi-scale
# crops and the whole images, one concatenated training set. Validation: full val images.
_base_ = './AFMNet-tood_r50_k13_sliced.py'
full_images = dict(
    type='CocoDataset',
    data_root='Datasets/',
    metainfo=dict(classes=('pedestrian', 'people', 'bicycle', 'car', 'van', 'truck', 'tricycle',
                           'awning-tricycle', 'bus', 'motor')),
    ann_file='labels/annotations/train_labels.json',
    data_prefix=dict(img='images/train/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=0),
    pipeline={{_base_.train_pipeline}})
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        datasets=[{{_base_.train_dataloader.dataset}}, full_images]))
