"""Lightning and Hugging Face adapters (skipped where those frameworks are not installed).

Each one trains a tiny model with gradient accumulation and checks that one frame arrives per
optimizer step, carrying the norms of the gradient the optimizer is about to apply.
"""

import numpy as np
import pytest
import torch

from earengine.sonify.sinks import MemorySink


def layer_norms(model):
    out = []
    for module in model.modules():
        own = [p.grad.reshape(-1) for p in module.parameters(recurse=False) if p.grad is not None]
        if own:
            out.append(float(torch.linalg.vector_norm(torch.cat(own))))
    return out


def test_lightning_callback_hears_each_optimizer_step(tmp_path):
    pl = pytest.importorskip("lightning.pytorch", reason="Lightning is not installed (pip install lightning)")
    from earengine.sonify.lightning import SonifyCallback

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    seen = []

    class Reference(pl.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append(layer_norms(module))

    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 6, generator=g), torch.randn(64, 1, generator=g))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    sink = MemorySink()
    trainer = pl.Trainer(max_steps=5, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(tmp_path), callbacks=[SonifyCallback(sink, run="tiny"), Reference()])
    trainer.fit(Tiny(), loader)
    assert [f.step for f in sink.frames] == [0, 1, 2, 3, 4]
    assert np.allclose([f.norms for f in sink.frames], seen, rtol=1e-5)
    assert sink.ended == ["tiny"]


def test_hugging_face_callback_hears_each_optimizer_step(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    from earengine.sonify.huggingface import SonifyTrainerCallback

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))

        def forward(self, x, labels=None):
            out = self.net(x)
            return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

    seen = []

    class Reference(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            seen.append(layer_norms(model))

    g = torch.Generator().manual_seed(0)
    rows = [{"x": torch.randn(6, generator=g), "labels": torch.randn(1, generator=g)} for _ in range(64)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        max_grad_norm=0.0, report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    sink = MemorySink()
    trainer = transformers.Trainer(model=Tiny(), args=args, train_dataset=rows,
                                   callbacks=[SonifyTrainerCallback(sink, run="hf"), Reference()])
    trainer.train()
    assert [f.step for f in sink.frames] == [0, 1, 2, 3]
    assert np.allclose([f.norms for f in sink.frames], seen, rtol=1e-5)
    assert sink.ended == ["hf"]
