#!/usr/bin/env bash
# Prepare, on THIS (CPU) machine, what tools/gpu_check.sh needs on the bare GPU machine, under .gpu/ (git-ignored):
#   .gpu/data/cifar10.tar.gz  the CIFAR-10 ImageFolder tree (../shared/data/cifar10; 20 MB gzipped)
#   .gpu/wheels/           the Python packages dmkd needs that the GPU image lacks (diffusers, fastcore, papermill, ipykernel and
#                          their dependencies), as x86-64 CPython 3.12 wheels (the image's python3; KINDS.md lists what it holds)
# The device tool carries at most 64 MiB per call, the repository included: measured 2026-12-03, the repository is 6.5 MB,
# the data 20 MB and the wheels 21 MB, so one call carries all (`carry: [".gpu"]`). Uses PyPI through pip.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
DATA=${DATA:-../shared/data/cifar10}
mkdir -p .gpu/data .gpu/wheels
if [ ! -f .gpu/data/cifar10.tar.gz ]; then
  [ -d "$DATA/train" ] || { echo "no CIFAR-10 tree at $DATA (set DATA=...)"; exit 1; }
  tar -czf .gpu/data/cifar10.tar.gz -C "$(dirname "$DATA")" "$(basename "$DATA")"
fi
# the versions this checkout is tested with, for Python 3.12 on x86-64 Linux, binary wheels only
pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
  -d .gpu/wheels "diffusers==0.42.1" "fastcore==1.14.5" "papermill==2.7.0" "ipykernel==7.4.0" "nbclient==0.11.0" "nbformat==5.11.1"
# drop what the GPU image already holds (its torch, numpy, pandas, ... must stay the image's own)
present='absl_py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated_doc anyio attrs certifi charset_normalizer click
cloudpickle colorama contourpy cycler filelock fonttools frozenlist fsspec h11 h5py hf_xet httpcore httpx huggingface_hub idna imageio
iniconfig jinja2 joblib kiwisolver markdown markdown_it_py markupsafe matplotlib mdurl msgpack multidict networkx numpy packaging pandas
pillow platformdirs pluggy propcache protobuf psutil pyarrow pygments pyparsing python_dateutil pytz pyyaml regex requests rich
safetensors scipy six sympy mpmath tqdm typing_extensions tzdata urllib3 yarl zipp torch triton setuptools wheel pip shellingham typer
tabulate scikit_learn threadpoolctl seaborn transformers tokenizers timm torchvision'
for p in $present; do rm -f .gpu/wheels/"$p"-*.whl .gpu/wheels/"${p//_/-}"-*.whl; done
rm -f .gpu/wheels/[Hh]uggingface_hub-*.whl .gpu/wheels/[Pp]illow-*.whl .gpu/wheels/PyYAML-*.whl .gpu/wheels/[Mm]arkup[Ss]afe-*.whl \
      .gpu/wheels/[Jj]inja2-*.whl .gpu/wheels/nvidia_*.whl
du -sh .gpu/data .gpu/wheels
echo "then, on the device tool: run(command='bash tools/gpu_check.sh', carry=['.gpu'], timeout_s=600); repository + .gpu must stay under 64 MiB"
