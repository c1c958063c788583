"""DINO self-distillation: projection head, loss with centering, EMA teacher, schedules."""

from chadavit.ssl.dino_head import DINOHead
from chadavit.ssl.dino_loss import DINOLoss
from chadavit.ssl.ema import ema_update
from chadavit.ssl.schedules import cosine_schedule, linear_warmup_then_constant

__all__ = ["DINOHead", "DINOLoss", "cosine_schedule", "ema_update", "linear_warmup_then_constant"]
