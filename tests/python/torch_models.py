"""Models the tests build and export with PyTorch, and a float32 PyTorch training reference that
follows intedge's data order exactly."""
import io

import numpy as np
import onnx
import torch
import torch.nn as nn


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


def export(model, example, *, dynamo, opset):
    f = io.BytesIO()
    model.eval()
    if dynamo:
        torch.onnx.export(model, (example,), f, dynamo=True, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=({0: torch.export.Dim("N")},))
    else:
        torch.onnx.export(model, (example,), f, dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    model.train()
    return onnx.load_from_string(f.getvalue())


def torch_fit(model, trainer, x, y, x_val, y_val, epochs, lr, momentum=0.0, weight_decay=0.0):
    """Float32 PyTorch SGD over the same batches in the same order as `trainer`. Returns val acc."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    bs = trainer.batch_size
    for e in range(epochs):
        order = trainer.batch_order(len(x), e)
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            opt.zero_grad()
            nn.functional.cross_entropy(model(torch.tensor(x[idx])), torch.tensor(y[idx], dtype=torch.long)).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.tensor(x_val)).argmax(1).numpy() == y_val).mean())
    model.train()
    return acc


def mnist(n_train=None):
    import intedge
    ds = intedge.load_data("builtin:mnist-5k", seed=0)
    norm = lambda a: ((a / 255.0 - 0.1307) / 0.3081).astype(np.float32)  # noqa: E731
    return norm(ds.x_train[:n_train]), ds.y_train[:n_train], norm(ds.x_val), ds.y_val
