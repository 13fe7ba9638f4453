{
  "targets": [
    {
      "target_name": "vireo_native",
      "sources": ["binding/addon.cc", "binding/machine_wrap.cc", "binding/switch_wrap.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "core", "."],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions"],
      "libraries": ["<(module_root_dir)/out/core/libvireo_core.a", "-lz", "-lzstd", "-luring", "-lslirp", "-lZydis", "-lpthread"]
    }
  ]
}
