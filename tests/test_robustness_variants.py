"""The robustness benchmark's variants: selection by name prefix, and that each keeps labels on their pixels."""
import click
import numpy as np
import pytest

from benchmarks.robustness import VARIANTS, pick_variants


def test_pick_variants_by_prefix_in_table_order():
    assert pick_variants("") == list(VARIANTS)
    got = pick_variants("16-bit, as is")
    assert got[0] == "as is" and len(got) == 3 and all(n.startswith("16-bit") for n in got[1:])
    with pytest.raises(click.BadParameter, match="names no variant"):
        pick_variants("sepia")


def test_every_variant_gives_an_image_the_sdk_reads():
    from sdk.image_io import to_gray_u8

    g = np.random.default_rng(0).integers(0, 256, size=(120, 100)).astype(np.uint8)
    for name, (fimg, fpts, sp) in VARIANTS.items():
        img = fimg(g)
        assert img.dtype in (np.uint8, np.uint16), name
        assert to_gray_u8(img).shape == img.shape[:2], name
        p = fpts(np.array([[10.0, 20.0]]), g.shape)
        assert p.shape == (1, 2) and sp > 0, name
