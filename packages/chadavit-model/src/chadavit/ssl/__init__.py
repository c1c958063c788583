"""Training objectives: DINO self-distillation (head, loss with centering, EMA teacher, schedules).

`objective` states what the training loop asks of an objective, `dino` implements it for DINO,
`methods` names the objectives `chadavit-train` can run.
"""

from chadavit.ssl.dino_head import DINOHead
from chadavit.ssl.dino_loss import DINOLoss
from chadavit.ssl.ema import ema_update
from chadavit.ssl.schedules import cosine_schedule, linear_warmup_then_constant

__all__ = ["DINOHead", "DINOLoss", "cosine_schedule", "ema_update", "linear_warmup_then_constant"]
