{
  "targets": [
    {
      "target_name": "immunize_linalg",
      "sources": ["models/linalg/native/linalg.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-O3", "-fno-exceptions"],
      "cflags_cc!": ["-O3", "-fno-exceptions"],
      "cflags": ["-O2"],
      "cflags_cc": ["-O2", "-fexceptions"],
      "libraries": ["-lopenblas", "-llapacke"]
    }
  ]
}
