// libFuzzer target for the mixes entry; the work is in entries.cpp.
#include "entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    quantlens::fuzz::mixes_entry(data, size);
    return 0;
}
