# The published AFMNet schedule: SGD 0.02 (batch 4), 500-iter linear warm-up,
# steps at epochs 16 and 22, 36 epochs, validation every epoch.
max_epochs = 36
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[16, 22], gamma=0.1)
]

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))

# lr 0.02 is for 1 GPU x batch 4; `--auto-scale-lr` style scaling keeps it with other batches.
auto_scale_lr = dict(enable=False, base_batch_size=4)
