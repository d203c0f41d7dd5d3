// libFuzzer target for the zoo entry; the work is in entries.cpp.
#include "entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    quantlens::fuzz::zoo_entry(data, size);
    return 0;
}
