{
  "targets": [
    {
      "target_name": "immunize_linalg",
      "sources": ["models/linalg/native/linalg.cc", "models/linalg/native/probeKernels.cc", "models/linalg/native/spectralKernels.cc", "models/linalg/native/tfKernels.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags": ["-O3", "-fno-math-errno", "-fno-trapping-math"],
      "cflags_cc": ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fexceptions", "-Wno-psabi"],
      "libraries": ["-lopenblas", "-llapacke", "-pthread"]
    }
  ]
}
