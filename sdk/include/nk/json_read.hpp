// nk/json_read.hpp — depth-limited, UTF-8-validating RapidJSON parsing. Header-only, no
// dependency beyond RapidJSON; used by nk/sdk.hpp inside plugins and by the host, so both sides
// refuse the same documents.
//
// Why: RapidJSON's default parser recurses once per nesting level, and so does every walk over a
// parsed document (destruction, Accept, CopyFrom, operator==), so a few hundred bytes of gzipped
// '[' overflow any thread's stack. parse_sax() and parse_document() parse iteratively
// (kParseIterativeFlag keeps the parser's stack on the heap) through a handler that stops at the
// first object or array deeper than `max_depth`, so a Document they fill is never deeper than
// that and every later recursive walk over it is bounded. Both also validate UTF-8.
//
// Depth counts open containers: 1 and "s" have depth 0, [] and {} depth 1, {"a":[]} depth 2.
// Thread-safety: pure functions; the handler and stream belong to the caller.
#pragma once

#include <cstddef>
#include <cstdint>

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace nk {
namespace json_read {

// The host's default (socket.max_json_depth) and the fixed limit of sdk.hpp's parsing (plugins
// get no config). Game JSON rarely nests past ten levels; 64 keeps each recursive walk over a
// document to a few tens of KB even under ASan, well inside the smallest thread stack a
// document meets (io threads, the blocking pool, event workers, and plugin threads whose size
// the host does not choose).
constexpr unsigned kDefaultMaxDepth = 64;

// Forwards every SAX event to `Handler` (a rapidjson::Document or any reader handler) and fails
// the parse, with too_deep() set, when a container would open beyond `max_depth`.
template <class Handler>
class DepthLimitedHandler {
  public:
    using Ch = typename Handler::Ch;

    DepthLimitedHandler(Handler& inner, unsigned max_depth) : inner_(inner), max_(max_depth) {}

    bool too_deep() const { return too_deep_; }

    bool Null() { return inner_.Null(); }
    bool Bool(bool b) { return inner_.Bool(b); }
    bool Int(int i) { return inner_.Int(i); }
    bool Uint(unsigned u) { return inner_.Uint(u); }
    bool Int64(std::int64_t i) { return inner_.Int64(i); }
    bool Uint64(std::uint64_t u) { return inner_.Uint64(u); }
    bool Double(double d) { return inner_.Double(d); }
    bool RawNumber(const Ch* s, rapidjson::SizeType n, bool copy) {
        return inner_.RawNumber(s, n, copy);
    }
    bool String(const Ch* s, rapidjson::SizeType n, bool copy) { return inner_.String(s, n, copy); }
    bool Key(const Ch* s, rapidjson::SizeType n, bool copy) { return inner_.Key(s, n, copy); }
    bool StartObject() { return open() && inner_.StartObject(); }
    bool EndObject(rapidjson::SizeType n) {
        --depth_;
        return inner_.EndObject(n);
    }
    bool StartArray() { return open() && inner_.StartArray(); }
    bool EndArray(rapidjson::SizeType n) {
        --depth_;
        return inner_.EndArray(n);
    }

  private:
    bool open() {
        if (depth_ >= max_) {
            too_deep_ = true;
            return false;
        }
        ++depth_;
        return true;
    }

    Handler& inner_;
    unsigned max_;
    unsigned depth_ = 0;
    bool too_deep_ = false;
};

// What a parse returned. When `too_deep` is set, parse.Code() is kParseErrorTermination.
struct Result {
    rapidjson::ParseResult parse;
    bool too_deep = false;
    explicit operator bool() const { return !parse.IsError(); }
};

// Parses `in` into `handler` with `Flags` plus the iterative and UTF-8-validating flags.
template <unsigned Flags = rapidjson::kParseDefaultFlags, class Stream, class Handler>
inline Result parse_sax(Stream& in, Handler& handler, unsigned max_depth) {
    DepthLimitedHandler<Handler> limited(handler, max_depth);
    rapidjson::Reader reader;
    Result r;
    r.parse = reader.Parse<Flags | rapidjson::kParseIterativeFlag |
                           rapidjson::kParseValidateEncodingFlag>(in, limited);
    r.too_deep = limited.too_deep();
    return r;
}

// Parses `len` bytes at `text` (need not be NUL-terminated; null with len 0 is empty) into
// `doc`. On failure `doc` keeps its previous value; read the error from the result, not from
// doc.HasParseError().
inline Result parse_document(const char* text, std::size_t len, rapidjson::Document& doc,
                             unsigned max_depth) {
    rapidjson::MemoryStream ms(text != nullptr ? text : "", text != nullptr ? len : 0);
    rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(ms);
    Result r;
    auto generate = [&](rapidjson::Document& target) {
        r = parse_sax(in, target, max_depth);
        return static_cast<bool>(r);
    };
    doc.Populate(generate);
    return r;
}

}  // namespace json_read
}  // namespace nk
