"""Segmentation model-name grammar (docs/semantics.md §B.3) and its registry resolution."""

import pytest

from pac_models import create_model, is_model, list_models
from pac_models.segmentation.grammar import (
    EdgeSpec,
    format_name,
    parse_edges,
    parse_name,
)


def test_table_examples():
    p = parse_name("fcn8s_crfi5p4d5641p4d5161")
    assert (p.backbone, p.frozen, p.crf.kind, p.crf.num_steps, p.crf.loose) == (
        "fcn8s", False, "crf", 5, False)
    assert p.crf.edges == (EdgeSpec("4d", 5, 64, 1), EdgeSpec("4d", 5, 16, 1))
    assert parse_name("fcn8s_crfi5lp4d5641p4d5161").crf.loose
    assert parse_name("fcn8sfrozen_crfi5p4d5641p4d5161").frozen
    assert parse_name("fcn8s_crfi5p4d5321").crf.edges == (EdgeSpec("4d", 5, 32, 1),)
    assert parse_name("fcn8spac_crfi5p4d5641p4d5161").backbone == "fcn8spac"
    d = parse_name("fcn8s_crf").crf
    assert (d.num_steps, d.loose, d.edges) == (5, False, (EdgeSpec("4d", 5, 16, 1),))
    e = parse_name("fcn8s_crfi2p2ds312p0d313").crf
    assert e.num_steps == 2
    assert e.edges == (EdgeSpec("2d", 3, 1, 2, True), EdgeSpec("0d", 3, 1, 3, False))
    assert e.edges[1].compat_type == "potts" and e.edges[0].compat_type == "2d"
    assert parse_name("fcn8s_crfv7").crf.kind == "crfv7"
    assert parse_name("fcn8s_crfi12lp4d5161").crf.num_steps == 12
    assert parse_name("fcn8saltpad").crf is None
    for kind in ("convcrf", "convcrfv1"):
        c = parse_name(f"fcn8s_{kind}").crf
        assert c.is_convcrf and c.edges == ()
    assert parse_name("fcn8s_crfp4d51281").crf.edges[0].dilation == 128  # D = several digits
    assert parse_name("fcn8s_crfpnas311").crf.edges[0].compat_type == "na"


def test_canonical_and_string_forms():
    assert format_name(parse_name("fcn8s_crf")) == "fcn8s_crfi5p4d5161"
    assert format_name(parse_name("fcn8sfrozen_crfi3lp2ds312")) == "fcn8sfrozen_crfi3lp2ds312"
    assert parse_edges(("4d_5_16_1", "2ds_3_1_2")) == parse_edges("p4d5161p2ds312")
    assert EdgeSpec("2d", 3, 1, 2, True).to_string() == "2ds_3_1_2"


@pytest.mark.parametrize("name, field, seen", [
    ("vgg16", "backbone", "'vgg16'"),
    ("fcn8s_crf_x", "at most one '_'", "fcn8s_crf_x"),
    ("fcn8sfrozen", "backbone", "'fcn8sfrozen'"),
    ("fcn32s_crf", "backbone", "'fcn32s'"),
    ("fcn8s_", "CRF part", "''"),
    ("fcn8s_densecrf", "CRF kind", "'densecrf'"),
    ("fcn8s_crfx5", "text after 'crf'", "'x5'"),
    ("fcn8s_crfi", "STEPS", "''"),
    ("fcn8s_crfil", "STEPS", "'l'"),
    ("fcn8s_crfi0", "STEPS", "'0'"),
    ("fcn8s_crfi5x", "text after STEPS", "'x'"),
    ("fcn8s_crfli5", "text after 'crf'", "'li5'"),
    ("fcn8s_crfi5p4x5161", "TYPE of edge 0", "'4x'"),
    ("fcn8s_crfi5p4d5161p1d5161", "TYPE of edge 1", "'1d'"),
    ("fcn8s_crfi5p4d4161", "K (kernel size)", "'4'"),
    ("fcn8s_crfi5p4dx161", "K (kernel size)", "'x'"),
    ("fcn8s_crfi5p4d5a61", "D (dilation)", "'a6'"),
    ("fcn8s_crfi5p4d501", "D (dilation)", "'0'"),
    ("fcn8s_crfi5p4d5160", "B (blur)", "'0'"),
    ("fcn8s_crfi5p4d51", "edge 0", "'4d51'"),
    ("fcn8s_crfi5p", "edge 0", "''"),
    ("fcn8s_crfi5pp4d5161", "edge 0", "''"),
])
def test_malformed_names_say_which_field(name, field, seen):
    with pytest.raises(ValueError) as err:
        parse_name(name)
    msg = str(err.value)
    assert field in msg and seen in msg and repr(name) in msg
    with pytest.raises(ValueError, match="must be" if name.startswith("fcn") else "unknown"):
        create_model(name)
    assert not is_model(name)


def test_pairwise_sequence_errors():
    with pytest.raises(ValueError, match="pairwise\\[0\\]"):
        parse_edges(("4d_5_16",))
    with pytest.raises(ValueError, match="TYPE"):
        parse_edges(("xx_5_16_1",))
    with pytest.raises(TypeError, match="pairwise"):
        parse_edges(5)
    with pytest.raises(TypeError):
        parse_name(3)


def test_registry_resolution():
    names = list_models(tag="segmentation")
    for n in ("fcn8s", "fcn8saltpad", "fcn8spac", "fcn8s_crfi5p4d5641p4d5161",
              "fcn8s_crfi5p4d5321", "fcn8spac_crfi5p4d5641p4d5161"):
        assert n in names
    assert is_model("fcn8sfrozen_crfi5lp4d5641p4d5161") and is_model("FCN8sPac")
    assert "pac_joint_upsample" in list_models() and is_model("JBU_9_10_0.5")  # depth unaffected
    m = create_model("fcn8sfrozen_crfi3lp2ds312", num_classes=5, width=2, fc_channels=4)
    assert m.model_name == "fcn8sfrozen_crfi3lp2ds312" and m.crf.num_steps == 3
    assert m.backbone_frozen and not any(p.requires_grad for p in m.backbone.parameters())
    assert all(p.requires_grad for p in m.crf.parameters())
    assert m.backbone.score_fr.out_channels == 5 and m.num_classes == 5
