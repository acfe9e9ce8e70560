"""CE2P's three outputs are wired as the paper's figure: the final parsing fuses the decoder's features
with the edge branch's, the decoder's parsing (the aux output) does not see the edge branch, and the edge
logits come from the edge branch alone. Oracle: which outputs move when one branch's weights change."""

from __future__ import annotations

import torch

from ccnet.models import create_model


def _outputs(model, x):
    with torch.no_grad():
        model.train()  # aux holds the decoder and edge logits; dropout off (eval BN statistics below)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.Dropout2d):
                module.eval()
        out, aux = model(x)
        return out, aux.parsing, aux.edge


def test_final_parsing_uses_the_edge_branch_and_the_decoder_parsing_does_not():
    torch.manual_seed(0)
    model = create_model("ce2p_rcca_tiny", num_classes=5)
    x = torch.randn(1, 3, 32, 40)
    final, decoder, edge = _outputs(model, x)
    with torch.no_grad():
        for conv in model.head.edge.reduce:  # change the edge branch's features
            for p in conv.parameters():
                p.add_(0.5 * torch.randn_like(p))
    final2, decoder2, edge2 = _outputs(model, x)
    torch.testing.assert_close(decoder2, decoder)  # the decoder's parsing has no edge input
    assert not torch.allclose(final2, final, atol=1e-4)  # the final parsing fuses the edge features
    assert not torch.allclose(edge2, edge, atol=1e-4)

    with torch.no_grad():  # the final classifier: only the final parsing moves
        model.head.classifier.bias.add_(torch.arange(5.0))
    final3, decoder3, edge3 = _outputs(model, x)
    torch.testing.assert_close(decoder3, decoder2)
    torch.testing.assert_close(edge3, edge2)
    torch.testing.assert_close(final3 - final2, torch.arange(5.0)[None, :, None, None].expand_as(final3))
    # eval mode answers the final parsing
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x).out, final3)
