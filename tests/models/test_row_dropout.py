"""U-Net dropout draws by global row: two processes' slices drop what one process drops."""
import torch

from rectflow.models import build_model
from rectflow.models.dropout import global_rows

UNET = dict(type="unet", channels=1, resolution=8, width=8, mults=[1, 2], dropout=0.3,
            num_classes=10)


def test_slices_of_a_global_batch_get_the_full_batch_masks():
    torch.manual_seed(0)
    model = build_model(UNET).train()
    with torch.no_grad():   # the output conv starts at zero: give it weights to show masks
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x, t, y = torch.randn(12, 1, 8, 8, generator=g), torch.rand(12, generator=g), \
        torch.randint(10, (12,), generator=g)
    torch.manual_seed(5)
    with global_rows(0, 12):
        full = model(x, t, y=y)
    parts = []
    for start in (0, 4, 8):   # three processes, each seeded alike, each with its rows
        torch.manual_seed(5)
        with global_rows(start, 12):
            parts.append(model(x[start:start + 4], t[start:start + 4], y=y[start:start + 4]))
    assert torch.equal(torch.cat(parts), full)
    torch.manual_seed(5)
    with global_rows(0, 4):   # the same rows as the first slice of a smaller batch: other masks
        assert not torch.allclose(model(x[:4], t[:4], y=y[:4]), full[:4])
    with global_rows(4, 12):
        assert torch.equal(model.eval()(x[4:8], t[4:8], y=y[4:8]), model(x, t, y=y)[4:8])
