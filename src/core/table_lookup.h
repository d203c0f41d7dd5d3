// The small constant tables that give an enum its names and sizes (tensor roles, safetensors
// dtypes, llama.cpp's presets) are searched one way: the first entry whose field matches.
#pragma once

#include <ranges>

namespace quantlens {

// The first entry of `table` whose `field` equals `value`, or nullptr.
template <std::ranges::range Table, class Field, class Value>
const std::ranges::range_value_t<Table>* find_entry(const Table& table,
                                                    Field std::ranges::range_value_t<Table>::*field,
                                                    const Value& value) {
    for (const auto& entry : table)
        if (entry.*field == value) return &entry;
    return nullptr;
}

}  // namespace quantlens
