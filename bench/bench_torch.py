"""The PyTorch side of `cargo xtask bench --vs-pytorch`.

The same steps as `vl_training::bench`, written in PyTorch from the
reference semantics (salesforce/ALBEF `models/model_pretrain.py`,
`models/vit.py`, `models/xbert.py`; HF `modeling_altclip.py`), on the shapes
that the Rust side passes as JSON (`--spec`), so both do the same work:

- albef_pretrain: EMA of the momentum model, online ViT + text encoder, ITC
  with momentum-feature queues and distilled targets, ITM with in-batch hard
  negatives (positives and negatives fused in one 3B-row call), MLM on 15 %
  of the tokens with momentum soft targets (logits at masked positions
  only), one AdamW step (no decay on biases and 1-D parameters).
- altclip_stage1: XLM-R student (HF `XLMRobertaModel`, no pooler) +
  `pre_LN` + `transformation`, MSE against fixed targets, AdamW.
- image_embed / text_embed / itm_rerank: inference under `no_grad`.

`--device cuda` runs everything on the GPU (every tensor and generator is
made there) and waits for the device after each call, as the Rust side
waits by reading its losses back.

Prints one JSON object: {"ms_median", "samples_per_s", "peak_rss_mib"},
with "peak_gpu_mib" on CUDA.
"""

import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def generator():
    """A seeded generator on the device tensors are made on (`--device`)."""
    return torch.Generator(device=torch.get_default_device()).manual_seed(1)


class Attention(nn.Module):
    def __init__(self, d, heads, kv_width=None, dropout=0.0):
        super().__init__()
        kv_width = kv_width or d
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(kv_width, d)
        self.v = nn.Linear(kv_width, d)
        self.out = nn.Linear(d, d)

    def forward(self, x, context=None):
        context = x if context is None else context
        b, t, d = x.shape
        split = lambda y: y.view(b, -1, self.heads, d // self.heads).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(context)), split(self.v(context))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class VitBlock(nn.Module):
    """timm's pre-LN block (eps 1e-6)."""

    def __init__(self, d, heads, ff):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Vit(nn.Module):
    def __init__(self, s):
        super().__init__()
        d, p = s["vision_width"], s["patch"]
        n = (s["res"] // p) ** 2
        self.patch = nn.Conv2d(3, d, p, p)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, d))
        self.blocks = nn.ModuleList(
            VitBlock(d, s["vision_heads"], s["vision_ff"]) for _ in range(s["vision_depth"])
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class BertLayer(nn.Module):
    """Post-LN BERT layer (eps 1e-12), with cross-attention in fusion layers."""

    def __init__(self, s, cross_width=None):
        super().__init__()
        d, drop = s["hidden"], s["hidden_dropout"]
        self.attn = Attention(d, s["heads"], dropout=s["attention_dropout"])
        self.norm1 = nn.LayerNorm(d, eps=1e-12)
        self.cross = None
        if cross_width:
            self.cross = Attention(d, s["heads"], cross_width, s["attention_dropout"])
            self.norm_cross = nn.LayerNorm(d, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(d, s["ff"]), nn.GELU(), nn.Linear(s["ff"], d))
        self.norm2 = nn.LayerNorm(d, eps=1e-12)
        self.drop = nn.Dropout(drop)

    def forward(self, x, image=None):
        x = self.norm1(x + self.drop(self.attn(x)))
        if self.cross is not None:
            x = self.norm_cross(x + self.drop(self.cross(x, image)))
        return self.norm2(x + self.drop(self.ff(x)))


class Albef(nn.Module):
    def __init__(self, s):
        super().__init__()
        d = s["hidden"]
        self.vit = Vit(s)
        self.words = nn.Embedding(s["vocab"], d)
        self.positions = nn.Embedding(512, d)
        self.types = nn.Embedding(2, d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        self.emb_drop = nn.Dropout(s["hidden_dropout"])
        self.text = nn.ModuleList(BertLayer(s) for _ in range(s["text_layers"]))
        self.fusion = nn.ModuleList(
            BertLayer(s, s["vision_width"]) for _ in range(s["fusion_layers"])
        )
        self.vision_proj = nn.Linear(s["vision_width"], s["embed_dim"])
        self.text_proj = nn.Linear(d, s["embed_dim"])
        self.itm_head = nn.Linear(d, 2)
        self.mlm_dense = nn.Linear(d, d)
        self.mlm_norm = nn.LayerNorm(d, eps=1e-12)
        self.mlm_decoder = nn.Linear(d, s["vocab"])
        self.temp = nn.Parameter(torch.tensor(0.07))

    def image_embeds(self, pixels):
        return self.vit(pixels)

    def text_embeds(self, ids):
        t = ids.shape[1]
        pos = torch.arange(t)
        x = self.words(ids) + self.positions(pos)[None] + self.types(torch.zeros_like(ids))
        x = self.emb_drop(self.emb_norm(x))
        for layer in self.text:
            x = layer(x)
        return x

    def fuse(self, text, image):
        for layer in self.fusion:
            text = layer(text, image)
        return text

    def mlm_logits(self, hidden):
        return self.mlm_decoder(self.mlm_norm(F.gelu(self.mlm_dense(hidden))))


def albef_step_fn(s, batch, text_len):
    torch.manual_seed(0)
    model, momentum = Albef(s), Albef(s)
    momentum.load_state_dict(model.state_dict())
    for p in momentum.parameters():
        p.requires_grad_(False)
    momentum.eval()  # its features are targets (as ours: no dropout)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 or n == "temp"]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 or n == "temp")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=s["lr"],
    )
    e, q = s["embed_dim"], s["queue"]
    image_queue = F.normalize(torch.randn(e, q), dim=0)
    text_queue = F.normalize(torch.randn(e, q), dim=0)
    ptr = [0]
    g = generator()
    pixels = torch.rand(batch, 3, s["res"], s["res"], generator=g) * 4 - 2
    ids = torch.randint(5, s["vocab"], (batch, text_len), generator=g)
    ids[:, 0] = 2
    alpha, m = s["alpha"], s["momentum"]

    def step():
        with torch.no_grad():
            model.temp.clamp_(0.001, 0.5)
            for pm, p in zip(momentum.parameters(), model.parameters()):
                pm.mul_(m).add_(p.detach(), alpha=1 - m)
        image = model.image_embeds(pixels)
        image_feat = F.normalize(model.vision_proj(image[:, 0]), dim=-1)
        text = model.text_embeds(ids)
        text_feat = F.normalize(model.text_proj(text[:, 0]), dim=-1)
        # Masking: 15 %, never [CLS]; 80/10/10.
        prob = torch.full(ids.shape, s["mlm_probability"])
        prob[:, 0] = 0
        masked = torch.bernoulli(prob).bool()
        masked_ids = ids.clone()
        r = torch.rand(ids.shape)
        masked_ids[masked & (r < 0.8)] = 4
        rand = masked & (r >= 0.8) & (r < 0.9)
        masked_ids[rand] = torch.randint(5, s["vocab"], (int(rand.sum()),))
        with torch.no_grad():
            image_m = momentum.image_embeds(pixels)
            image_feat_m = F.normalize(momentum.vision_proj(image_m[:, 0]), dim=-1)
            text_feat_m = F.normalize(momentum.text_proj(momentum.text_embeds(ids)[:, 0]), dim=-1)
            image_all = torch.cat([image_feat_m.t(), image_queue], 1)
            text_all = torch.cat([text_feat_m.t(), text_queue], 1)
            sim_i2t_m = image_feat_m @ text_all / model.temp
            sim_t2i_m = text_feat_m @ image_all / model.temp
            truth = torch.zeros_like(sim_i2t_m)
            truth.fill_diagonal_(1)
            targets_i2t = alpha * F.softmax(sim_i2t_m, 1) + (1 - alpha) * truth
            targets_t2i = alpha * F.softmax(sim_t2i_m, 1) + (1 - alpha) * truth
            hidden_m = momentum.fuse(momentum.text_embeds(masked_ids), image_m)
            soft = F.softmax(momentum.mlm_logits(hidden_m[masked]), -1)
        sim_i2t = image_feat @ text_all / model.temp
        sim_t2i = text_feat @ image_all / model.temp
        loss_ita = (
            -(F.log_softmax(sim_i2t, 1) * targets_i2t).sum(1).mean()
            - (F.log_softmax(sim_t2i, 1) * targets_t2i).sum(1).mean()
        ) / 2
        with torch.no_grad():
            b = batch
            n = (ptr[0] + b) % q
            image_queue[:, ptr[0] : ptr[0] + b] = image_feat_m.t()[:, : min(b, q - ptr[0])]
            text_queue[:, ptr[0] : ptr[0] + b] = text_feat_m.t()[:, : min(b, q - ptr[0])]
            ptr[0] = n
            w_i2t = F.softmax(sim_i2t[:, :b], 1).fill_diagonal_(0) + 1e-8
            w_t2i = F.softmax(sim_t2i[:, :b], 1).fill_diagonal_(0) + 1e-8
            neg_text = torch.multinomial(w_i2t, 1).squeeze(1)
            neg_image = torch.multinomial(w_t2i, 1).squeeze(1)
        fused = model.fuse(
            torch.cat([text, text, text[neg_text]]),
            torch.cat([image, image[neg_image], image]),
        )
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long()
        loss_itm = F.cross_entropy(model.itm_head(fused[:, 0]), labels)
        hidden = model.fuse(model.text_embeds(masked_ids), image)
        logits = model.mlm_logits(hidden[masked])
        loss_mlm = (1 - alpha) * F.cross_entropy(logits, ids[masked]) - alpha * (
            F.log_softmax(logits, -1) * soft
        ).sum(-1).mean()
        loss = loss_ita + loss_itm + loss_mlm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def altclip_step_fn(s, batch, text_len):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    torch.manual_seed(0)
    st = s["student"]
    config = XLMRobertaConfig(
        vocab_size=st["vocab"],
        hidden_size=st["hidden"],
        num_hidden_layers=st["layers"],
        num_attention_heads=st["heads"],
        intermediate_size=st["ff"],
        hidden_dropout_prob=st["hidden_dropout"],
        attention_probs_dropout_prob=st["attention_dropout"],
        max_position_embeddings=st["max_pos"],
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
    )
    config._attn_implementation = "sdpa"
    roberta = XLMRobertaModel(config, add_pooling_layer=False)
    pre_ln = nn.LayerNorm(st["hidden"], eps=1e-5)
    transformation = nn.Linear(st["hidden"], st["project_dim"])
    modules = nn.ModuleList([roberta, pre_ln, transformation])
    modules.train()
    opt = torch.optim.AdamW(modules.parameters(), lr=s["lr"])
    g = generator()
    ids = torch.randint(5, st["vocab"], (batch, text_len), generator=g)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    targets = torch.rand(batch, st["project_dim"], generator=g) * 2 - 1

    def step():
        h = roberta(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = transformation(pre_ln(h))[:, 0]
        loss = F.mse_loss(pooled, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def inference_fn(s, step_name, batch, text_len):
    torch.manual_seed(0)
    model = Albef(s).eval()
    g = generator()
    pixels = torch.rand(batch, 3, s["res"], s["res"], generator=g) * 4 - 2
    ids = torch.randint(5, s["vocab"], (batch, text_len), generator=g)
    ids[:, 0] = 2
    with torch.no_grad():
        image = model.image_embeds(pixels)
        text = model.text_embeds(ids)

    def step():
        with torch.no_grad():
            if step_name == "image_embed":
                F.normalize(model.vision_proj(model.image_embeds(pixels)[:, 0]), dim=-1)
            elif step_name == "text_embed":
                F.normalize(model.text_proj(model.text_embeds(ids)[:, 0]), dim=-1)
            else:
                model.itm_head(model.fuse(text, image)[:, 0])

    return step


def op_fn(step_name):
    g = generator()
    if step_name == "op_gelu":
        x = torch.randn(32, 17, 256, generator=g, requires_grad=True)

        def step():
            x.grad = None
            F.gelu(x).sum().backward()

        return step, 32
    if step_name == "op_layer_norm":
        x = torch.randn(32, 32, 64, generator=g, requires_grad=True)
        norm = torch.nn.LayerNorm(64)

        def step():
            x.grad = None
            norm.zero_grad()
            norm(x).sum().backward()

        return step, 32
    if step_name == "op_attention":
        q, k, v = (torch.randn(32, 2, 17, 32, generator=g, requires_grad=True) for _ in range(3))

        def step():
            for t in (q, k, v):
                t.grad = None
            F.scaled_dot_product_attention(q, k, v).sum().backward()

        return step, 32
    a = torch.randn(64, 17, 32, generator=g)
    b = torch.randn(64, 32, 17, generator=g)
    return (lambda: torch.bmm(a, b)), 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, help="JSON shapes from the Rust side")
    parser.add_argument("--step", required=True)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_default_device(args.device)
    cuda = torch.device(args.device).type == "cuda"
    wait = torch.cuda.synchronize if cuda else (lambda: None)
    s = json.loads(args.spec)
    if args.step == "albef_pretrain":
        fn, batch = albef_step_fn(s, s["batch"], s["text_len"]), s["batch"]
    elif args.step == "altclip_stage1":
        fn, batch = altclip_step_fn(s, s["batch"], s["text_len"]), s["batch"]
    elif args.step.startswith("op_"):
        fn, batch = op_fn(args.step)
    else:
        fn, batch = inference_fn(s, args.step, s["eval_batch"], s["text_len"]), s["eval_batch"]
    times = []
    for i in range(args.warmup + args.iters):
        start = time.perf_counter()
        fn()
        wait()
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    out = {
        "ms_median": ms,
        "samples_per_s": batch / (ms / 1e3),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if cuda:
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


if __name__ == "__main__":
    main()
