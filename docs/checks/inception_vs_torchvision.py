"""One-off check: ganpipe's FIDInceptionV3 against torchvision's Inception3 with pytorch-fid's FID blocks.

torchvision cannot be imported beside the CPU torch build this project uses, so this script runs
torchvision's own inception.py from a downloaded wheel with stubs for the package parts it imports:

    pip download torchvision==0.28.0 --no-deps -d /tmp/tv
    python docs/checks/inception_vs_torchvision.py /tmp/tv/torchvision-0.28.0-*.whl

It compares parameter names and shapes (the weights file pt_inception-2015-12-05-6726825d.pth
loads into both) and the 2048-d features for the same random weights. Result on 2026-11-26:
"keys equal: True 566 shapes equal: True", "max abs diff of 2048-d features: 0.0".
"""
import tempfile
import zipfile
import sys, types, importlib.util, torch, torch.nn.functional as F
# stub the torchvision package parts inception.py imports (the real package cannot import beside torch 2.13 CPU)
tv = types.ModuleType("torchvision"); tv.__path__ = []
models = types.ModuleType("torchvision.models"); models.__path__ = []
sys.modules.update({"torchvision": tv, "torchvision.models": models})
def stub(name, **attrs):
    m = types.ModuleType(name); m.__dict__.update(attrs); sys.modules[name] = m
stub("torchvision.transforms"); stub("torchvision.transforms._presets", ImageClassification=object)
stub("torchvision.utils", _log_api_usage_once=lambda *a, **k: None)
stub("torchvision.models._api", register_model=lambda *a, **k: (lambda f: f), Weights=lambda **k: None, WeightsEnum=type("WeightsEnum", (), {}))
stub("torchvision.models._meta", _IMAGENET_CATEGORIES=[])
stub("torchvision.models._utils", _ovewrite_named_param=lambda *a, **k: None, handle_legacy_interface=lambda **k: (lambda f: f))
folder = tempfile.mkdtemp()
with zipfile.ZipFile(sys.argv[1]) as wheel:
    source = wheel.extract("torchvision/models/inception.py", folder)
spec = importlib.util.spec_from_file_location("torchvision.models.inception", source)
inc = importlib.util.module_from_spec(spec); sys.modules[spec.name] = inc
try:
    spec.loader.exec_module(inc)
except Exception as e:
    print("exec failed", type(e), e); raise
tvm = inc.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
# pytorch-fid's patches (forward changes only; parameters as torchvision's blocks)
def fidA(self, x):
    return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))], 1)
def fidC(self, x):
    b = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x)))))
    return torch.cat([self.branch1x1(x), self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))), b,
        self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))], 1)
def fidE(maxpool):
    def f(self, x):
        b3 = self.branch3x3_1(x); d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        p = F.max_pool2d(x, 3, 1, 1) if maxpool else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(p)], 1)
    return f
import types as T
for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"): getattr(tvm, n).forward = T.MethodType(fidA, getattr(tvm, n))
for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"): getattr(tvm, n).forward = T.MethodType(fidC, getattr(tvm, n))
tvm.Mixed_7b.forward = T.MethodType(fidE(False), tvm.Mixed_7b); tvm.Mixed_7c.forward = T.MethodType(fidE(True), tvm.Mixed_7c)
from ganpipe.metrics.inception import FIDInceptionV3
mine = FIDInceptionV3()
a, b = tvm.state_dict(), mine.state_dict()
print("keys equal:", list(a) == list(b), len(a), "shapes equal:", all(a[k].shape == b[k].shape for k in a))
torch.manual_seed(0)
sd = {k: (torch.randn_like(v) * 0.05 if v.is_floating_point() else v) for k, v in a.items()}
for k in sd:
    if k.endswith("running_var"): sd[k] = sd[k].abs() + 0.5
tvm.load_state_dict(sd); mine.load_state_dict(sd); tvm.eval(); mine.eval()
x = torch.rand(3, 3, 32, 32) * 2 - 1
with torch.no_grad():
    xi = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    blocks = [tvm.Conv2d_1a_3x3, tvm.Conv2d_2a_3x3, tvm.Conv2d_2b_3x3, tvm.maxpool1, tvm.Conv2d_3b_1x1, tvm.Conv2d_4a_3x3, tvm.maxpool2,
              tvm.Mixed_5b, tvm.Mixed_5c, tvm.Mixed_5d, tvm.Mixed_6a, tvm.Mixed_6b, tvm.Mixed_6c, tvm.Mixed_6d, tvm.Mixed_6e,
              tvm.Mixed_7a, tvm.Mixed_7b, tvm.Mixed_7c, tvm.avgpool]
    h = xi
    for m in blocks: h = m(h)
    ref = h.flatten(1); got = mine(x)
print("max abs diff of 2048-d features:", float((ref - got).abs().max()), "scale", float(ref.abs().max()))
