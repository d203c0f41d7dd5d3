// libFuzzer target for the imatrix readers (legacy .dat and GGUF); the work is in entries.cpp.
#include "entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    quantlens::fuzz::imatrix_entry(data, size);
    return 0;
}
