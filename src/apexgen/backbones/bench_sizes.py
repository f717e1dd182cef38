"""The widths the backbones' ``bench_configs`` share (``apexgen bench --size``): ``tiny`` (the configs
measured on our CPUs, ENVIRONMENT.md; text width 32), ``100m`` (hidden 768 = 12 heads × 64, 6 layers,
the real text widths: about 130M parameters, the size whose memory a CPU can measure above the counter's
noise) and ``0.7b`` (hidden 12 heads × 128 at each backbone's real text widths, for a GPU)."""

SIZES = ("tiny", "100m", "0.7b")

TINY_TEXT = 32
HEADS, HEAD_DIM = 12, 128
HIDDEN = HEADS * HEAD_DIM
MID_HEADS, MID_HEAD_DIM, MID_LAYERS = 12, 64, 6
