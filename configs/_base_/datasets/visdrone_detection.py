# VisDrone2019-DET in the layout `afm convert-visdrone` writes under `data_root`:
#   images/<split>/, labels/annotations/<split>_labels.json
# Change the root with `afm train ... --data-root DIR` (rewrites every dataloader and the
# evaluators) or `--cfg-options data_root=DIR/ train_dataloader.dataset.data_root=DIR/ ...`.
dataset_type = 'CocoDataset'
data_root = 'Datasets/'
classes = ('pedestrian', 'people', 'bicycle', 'car', 'van', 'truck', 'tricycle',
           'awning-tricycle', 'bus', 'motor')
metainfo = dict(classes=classes)
backend_args = None
img_scale = (1333, 800)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    # Masks are drawn from the (resized, flipped) boxes, so they always flip with the image.
    dict(type='RenderObjectMasks', strides=(8, 16), kind='oval', small_area=32 * 32),
    dict(type='PackAFMInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='labels/annotations/train_labels.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='labels/annotations/val_labels.json',
        data_prefix=dict(img='images/val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# COCO AP (max dets 10/100/500) and the official VisDrone toolkit's numbers.
val_evaluator = dict(type='VisDroneMetric', ann_file=data_root + 'labels/annotations/val_labels.json')
test_evaluator = val_evaluator
