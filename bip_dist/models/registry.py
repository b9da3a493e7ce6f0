"""Name -> constructor registry (timm style): one factory, one error listing the valid names."""

MODELS = {}


def register(name):
    """Decorator registering `fn(num_classes) -> nn.Module` under `name`."""
    def deco(fn):
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        MODELS[name] = fn
        return fn
    return deco


def build_model(arch, num_classes):
    """Build the dense model `arch` with `num_classes` outputs."""
    if arch not in MODELS:
        raise ValueError(f"unknown model {arch!r}; valid: {', '.join(sorted(MODELS))}")
    return MODELS[arch](num_classes)
