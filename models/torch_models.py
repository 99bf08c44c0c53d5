"""PyTorch models that the tests, the benchmark (tools/bench) and the fidelity study (tools/fidelity)
build and export, and a float32 PyTorch training reference that follows intedge's data order exactly."""
import io

import numpy as np
import onnx
import torch
import torch.nn as nn


class MLP(nn.Sequential):
    """Flatten, then Linear-ReLU-Linear."""

    def __init__(self, inputs=784, hidden=128, classes=10):
        super().__init__(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes))


class LeNet5(nn.Module):
    def __init__(self, flatten_by_view=True):
        super().__init__()
        self.flatten_by_view = flatten_by_view
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(400, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.c2(x)), 2)
        # view(size(0), -1) exports the Shape/Gather/Concat plumbing the importer folds
        x = x.view(x.size(0), -1) if self.flatten_by_view else torch.flatten(x, 1)
        return self.f3(torch.relu(self.f2(torch.relu(self.f1(x)))))


class ResidualPools(nn.Module):
    """A residual block (fan-out + Add), Sub, average and max pooling with padding, a global pool."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.dw = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=True)
        self.mpool = nn.MaxPool2d(3, stride=1, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = self.b(torch.relu(self.a(x)))
        x = torch.relu(x + y) - self.mpool(x)
        x = self.pool(torch.relu(self.dw(x)))
        x = nn.functional.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


def export(model, example, *, dynamo, opset, optimize=True):
    """optimize (dynamo): False keeps the exporter from storing equal initializers once."""
    f = io.BytesIO()
    model.eval()
    if dynamo:
        torch.onnx.export(model, (example,), f, dynamo=True, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("N")},), optimize=optimize)
    else:
        torch.onnx.export(model, (example,), f, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    model.train()
    return onnx.load_from_string(f.getvalue())


def torch_fit(model, trainer, x, y, x_val, y_val, epochs, lr, momentum=0.0, weight_decay=0.0, lr_at=None):
    """Float32 PyTorch SGD over the same batches in the same order as `trainer`. Returns the
    metrics of every epoch as Trainer.fit does: train loss and accuracy over the epoch's steps (in
    training mode), val loss and accuracy in eval mode. lr_at(epoch) overrides the learning rate."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    bs = trainer.batch_size
    history = []
    for e in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(e) if lr_at else lr
        order = trainer.batch_order(len(x), e)
        loss_sum = correct = 0.0
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            opt.zero_grad()
            out = model(torch.tensor(x[idx]))
            loss = nn.functional.cross_entropy(out, torch.tensor(y[idx], dtype=torch.long))
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += float((out.argmax(1).numpy() == y[idx]).sum())
        model.eval()
        with torch.no_grad():
            out = model(torch.tensor(x_val))
            val_loss = float(nn.functional.cross_entropy(out, torch.tensor(y_val, dtype=torch.long)))
        model.train()
        history.append({"epoch": e + 1, "train_loss": loss_sum / len(x), "train_acc": correct / len(x),
                        "val_loss": val_loss, "val_acc": float((out.argmax(1).numpy() == y_val).mean())})
    return history


def mnist(n_train=None):
    """builtin:mnist-5k (4,000 / 1,000), normalized float32 [N, 1, 28, 28]."""
    import intedge
    ds = intedge.load_data("builtin:mnist-5k", seed=0)
    norm = lambda a: ((a / 255.0 - 0.1307) / 0.3081).astype(np.float32)  # noqa: E731
    return norm(ds.x_train[:n_train]), ds.y_train[:n_train], norm(ds.x_val), ds.y_val


def digits():
    """builtin:digits (1,438 / 359), pixels in [0, 1], float32 [N, 1, 8, 8]."""
    import intedge
    ds = intedge.load_data("builtin:digits", seed=0)
    return ds.x_train, ds.y_train, ds.x_val, ds.y_val


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:  # the stride-2 shortcut conv
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (self.short(x) if self.short is not None else x))


class ResNet8(nn.Module):
    """CIFAR-style ResNet-8: a stem and three stages of one basic block (16, 32, 64 channels)."""

    def __init__(self, in_ch=3, classes=10, width=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_ch, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.s1 = BasicBlock(width, width, 1)
        self.s2 = BasicBlock(width, 2 * width, 2)
        self.s3 = BasicBlock(2 * width, 4 * width, 2)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = self.s3(self.s2(self.s1(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def export_training(model, example, *, dynamo, opset):
    """Exports with BatchNormalization kept as a node (eval-mode export folds it into Conv)."""
    f = io.BytesIO()
    if dynamo:
        model.train()  # in eval mode the dynamo exporter folds BatchNormalization into Conv
        torch.onnx.export(model, (example,), f, dynamo=True, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("N")},))
    else:
        model.train()
        torch.onnx.export(model, (example,), f, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    model.train()
    return onnx.load_from_string(f.getvalue())


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.body(x) if self.use_res else self.body(x)


class MobileNetV2Small(nn.Module):
    """MobileNetV2-style: a stem, inverted residual blocks (depthwise, ReLU6), a 1x1 head."""

    def __init__(self, in_ch=1, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            InvertedResidual(16, 16, 1, 2), InvertedResidual(16, 24, 2, 4), InvertedResidual(24, 24, 1, 4),
            nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6())
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class Activation(nn.Module):
    """Conv -> one activation -> Linear, for checking each activation against autograd."""

    FUNCTIONS = {"relu6": nn.functional.relu6, "leaky_relu": lambda v: nn.functional.leaky_relu(v, 0.1),
                 "hardsigmoid": nn.functional.hardsigmoid, "hardswish": nn.functional.hardswish,
                 "sigmoid": torch.sigmoid}

    def __init__(self, name):
        super().__init__()
        self.f = self.FUNCTIONS[name]
        self.c = nn.Conv2d(1, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 8 * 8, 10)
        with torch.no_grad():
            self.c.weight.mul_(3)  # spread the inputs over every branch of the function

    def forward(self, x):
        return self.fc(torch.flatten(self.f(self.c(x)), 1))


class LayoutZoo(nn.Module):
    """Broadcast Mul (squeeze-excite), constant Sub and Mul, Concat, Pad, Transpose and nearest
    upsampling between two convolutions."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(8, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        se = torch.sigmoid(nn.functional.adaptive_avg_pool2d(a, 1))
        b = torch.cat([a * se, (a - 0.5) * 1.5], dim=1)
        c = nn.functional.pad(b, (1, 0, 0, 1)).transpose(2, 3)
        d = nn.functional.interpolate(c, scale_factor=2, mode="nearest")
        return self.fc(torch.flatten(torch.relu(self.c2(d)), 1))


class DropoutNet(nn.Module):
    def __init__(self, p=0.3):
        super().__init__()
        self.f1 = nn.Linear(64, 256)
        self.drop = nn.Dropout(p)
        self.f2 = nn.Linear(256, 10)

    def forward(self, x):
        return self.f2(self.drop(torch.relu(self.f1(torch.flatten(x, 1)))))


class ViT(nn.Module):
    """A small vision transformer made as users make one: a Conv patch embedding, a class token
    (Concat), a positional embedding added over the batch, torch.nn.TransformerEncoder (pre-norm,
    GELU, batch first), a final LayerNorm and a Linear head on the class token."""

    def __init__(self, image=28, patch=7, dim=32, depth=2, heads=4, mlp=64, classes=10, channels=1, token_std=1.0):
        super().__init__()
        self.patch = nn.Conv2d(channels, dim, patch, stride=patch)
        tokens = (image // patch) ** 2
        # unit normal, as vit-pytorch draws them: at timm's std 0.02 the class token's row sits
        # within an int8 ulp or two of the patch tokens beside it (docs/transformers.md)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * token_std)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * token_std)
        layer = nn.TransformerEncoderLayer(dim, heads, mlp, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.encoder(x))[:, 0])


class BertClassifier(nn.Module):
    """transformers' BertModel with a small config (hidden 32, 2 layers, 4 heads, MLP 64, eager
    attention, no dropout), masked mean pooling over the tokens and a Linear head: what users export
    to fine-tune a sentence classifier. Its inputs are input_ids and attention_mask [N, seq_len]."""

    def __init__(self, vocab, seq_len, classes):
        import transformers  # only these tests need it

        super().__init__()
        cfg = transformers.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, max_position_embeddings=seq_len, attn_implementation="eager",
                                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.bert = transformers.BertModel(cfg, add_pooling_layer=False)
        self.head = nn.Linear(32, classes)

    def forward(self, input_ids, attention_mask):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1e-9))


def distinct_weights(model, seed=0):
    """Gives every parameter tensor values of its own. The dynamo exporter stores equal initializers
    once (unless optimize=False) and the importer refuses a weight read by two nodes (it cannot tell
    tying from that saving), while a fresh model is full of equal tensors: TransformerEncoder
    deep-copies its first layer, every LayerNorm starts at ones and zeros, every bias of
    MultiheadAttention at zeros."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if m is not model and hasattr(m, "reset_parameters") and not isinstance(m, nn.LayerNorm):
                m.reset_parameters()  # the encoder's layers drawn independently
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".norm" in name or name.startswith("norm"):
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


class CenterNetTiny(nn.Module):
    """A CenterNet-style detector at stride 4: a small conv backbone (two 2x2 max-pools) and one
    1x1 head of C + 4 channels (heatmap logits, box w, h in output cells, centre offset x, y).
    The heatmap bias starts at -2.19 (sigmoid 0.1), as CenterNet's does."""

    def __init__(self, classes, in_channels=1, width=16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=2, dilation=2), nn.ReLU())
        self.head = nn.Conv2d(2 * width, classes + 4, 1)
        with torch.no_grad():
            self.head.bias[:classes] = -2.19

    def forward(self, x):
        return self.head(self.body(x))


CENTERNET_L1_WEIGHTS = (0.1, 0.1, 1.0, 1.0)  # w, h, offset x, offset y


def centernet_loss(out, labels, classes):
    """CenterNet's loss in float (the runtime's IE_LOSS_CENTERNET): the penalty-reduced focal loss
    (alpha 2, beta 4) on sigmoid(heatmaps) against the Gaussian targets, L1 on w, h (x 0.1) and
    the offsets (x 1) at the centres, divided by the objects (1 if none). out: [n, C + 4, h, w];
    labels: int64 in the runtime's encoding (heat in Q30, boxes in Q16, -1: no box). Returns
    (loss, objects)."""
    from intedge._ffi import lib

    y = labels[:, :classes].to(out.dtype) / lib.IE_HEAT_ONE
    heat = out[:, :classes]
    pos = y == 1
    prob = torch.sigmoid(heat)
    focal = torch.where(pos, -(1 - prob) ** 2 * nn.functional.logsigmoid(heat),
                        -(1 - y) ** 4 * prob ** 2 * nn.functional.logsigmoid(-heat)).sum()
    boxes = labels[:, classes:] != lib.IE_NO_BOX
    w = torch.tensor(CENTERNET_L1_WEIGHTS, dtype=out.dtype).view(1, 4, 1, 1)
    l1 = (w * (out[:, classes:] - labels[:, classes:].to(out.dtype) / 65536).abs() * boxes).sum()
    objects = int(pos.sum())
    return (focal + l1) / max(objects, 1), objects


def conv_bn_relu(cin, cout, k=3, **kw):
    """Conv (padding k // 2 unless given), BatchNorm, ReLU."""
    kw.setdefault("padding", k // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, k, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU())


class SegUNet(nn.Module):
    """A two-level U-Net: Conv-BN-ReLU encoders with MaxPool, bilinear x2 upsampling (or a
    stride-2 ConvTranspose with up="transpose"), Concat skips, a 1x1 head; output at the input's
    H x W."""

    def __init__(self, in_ch=1, classes=11, width=16, up="bilinear"):
        super().__init__()
        w = width
        self.enc1, self.enc2, self.mid = conv_bn_relu(in_ch, w), conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w)
        self.dec2, self.dec1 = conv_bn_relu(4 * w, 2 * w), conv_bn_relu(3 * w, w)
        self.head = nn.Conv2d(w, classes, 1)
        self.ups = nn.ModuleList([nn.ConvTranspose2d(2 * w, 2 * w, 2, stride=2) for _ in range(2)]) \
            if up == "transpose" else None

    def _up(self, x, i):
        if self.ups is not None:
            return self.ups[i](x)
        return nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        m = self.mid(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self._up(m, 0), e2], 1))
        d1 = self.dec1(torch.cat([self._up(d2, 1), e1], 1))
        return self.head(d1)


class SegDeepLab(nn.Module):
    """DeepLab-style: a strided then dilated backbone (output stride 4), a small ASPP (1x1 and
    dilation 2 and 4 branches, concatenated, projected by a 1x1), a 1x1 head, and bilinear x4
    upsampling back to the input's H x W. Conv-BN-ReLU throughout."""

    def __init__(self, in_ch=1, classes=11, width=16):
        super().__init__()
        w = width
        self.backbone = nn.Sequential(conv_bn_relu(in_ch, w, stride=2), conv_bn_relu(w, 2 * w, stride=2),
                                      conv_bn_relu(2 * w, 2 * w, padding=2, dilation=2))
        self.aspp = nn.ModuleList([conv_bn_relu(2 * w, w, 1), conv_bn_relu(2 * w, w, padding=2, dilation=2),
                                   conv_bn_relu(2 * w, w, padding=4, dilation=4)])
        self.project = conv_bn_relu(3 * w, 2 * w, 1)
        self.head = nn.Conv2d(2 * w, classes, 1)

    def forward(self, x):
        f = self.backbone(x)
        a = self.project(torch.cat([b(f) for b in self.aspp], 1))
        return nn.functional.interpolate(self.head(a), scale_factor=4, mode="bilinear", align_corners=False)


def torch_segment_fit(model, trainer, x, y, x_val, y_val, epochs, lr, momentum=0.0, classes=None, optimizer="sgd"):
    """torch_fit for segmentation: per-pixel cross-entropy (255 ignored) over `trainer`'s batches
    in its order, by SGD or AdamW (weight decay 0, as intedge's default). Per epoch: train loss
    and pixel accuracy over the epoch's steps, val loss, mIoU and pixel accuracy in eval mode (the
    metrics of intedge.segment)."""
    from intedge.runtime import IGNORE_LABEL
    from intedge.segment import confusion, metrics
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum) if optimizer == "sgd" else \
        torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    xt, yt = torch.tensor(np.asarray(x, np.float32)), torch.tensor(np.asarray(y), dtype=torch.long)
    bs = trainer.batch_size
    history = []
    for e in range(epochs):
        order = trainer.batch_order(len(x), e)
        loss_sum = correct = counted = 0.0
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            opt.zero_grad()
            out = model(xt[idx])
            loss = nn.functional.cross_entropy(out, yt[idx], ignore_index=IGNORE_LABEL)
            loss.backward()
            opt.step()
            keep = yt[idx] != IGNORE_LABEL
            n = int(keep.sum())
            loss_sum += loss.item() * n
            counted += n
            correct += float(((out.argmax(1) == yt[idx]) & keep).sum())
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(torch.tensor(np.asarray(x_val[i:i + bs], np.float32)))
                             for i in range(0, len(x_val), bs)])
            val_loss = float(nn.functional.cross_entropy(out, torch.tensor(np.asarray(y_val), dtype=torch.long),
                                                         ignore_index=IGNORE_LABEL))
        model.train()
        c = out.shape[1] if classes is None else classes
        m = metrics(confusion(out.numpy().reshape(len(out), -1), np.asarray(y_val).reshape(len(out), -1), c))
        history.append({"epoch": e + 1, "train_loss": loss_sum / max(counted, 1), "train_acc": correct / max(counted, 1),
                        "val_loss": val_loss, "val_miou": m["miou"], "val_pixel_acc": m["pixel_acc"],
                        "val_iou": m["iou"]})
    return history
