"""SRLoRA for PyTorch: SRLoRALinear, apply_srlora (PEFT-style targets) and the two-call controller."""
from .controller import SRLoRAController, apply_srlora
from .layer import SRLoRALinear

__all__ = ["SRLoRALinear", "SRLoRAController", "apply_srlora"]
__version__ = "0.1.0"
