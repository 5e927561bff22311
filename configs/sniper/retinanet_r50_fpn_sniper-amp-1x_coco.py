# fp16 (mixed precision) variant: needs a GPU.
_base_ = './retinanet_r50_fpn_sniper-1x_coco.py'

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
