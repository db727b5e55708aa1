#include "net/router.hpp"

#include <functional>
#include <stdexcept>

namespace nk::net {

namespace {

constexpr std::size_t kMethodCount = static_cast<std::size_t>(Method::other) + 1;

std::size_t method_index(Method m) { return static_cast<std::size_t>(m); }

// Calls out(segment) for each '/'-separated segment of "/a/b/c" ("a", "b", "c")
// until out returns false. "/" gives one empty segment.
template <typename Out>
void for_each_segment(std::string_view path, Out&& out) {
    std::size_t i = path.empty() || path[0] != '/' ? 0 : 1;
    while (i <= path.size()) {
        std::size_t j = path.find('/', i);
        if (j == std::string_view::npos) j = path.size();
        if (!out(path.substr(i, j - i))) return;
        if (j == path.size()) break;
        i = j + 1;
    }
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

struct Router::Impl {
    struct Segment {
        std::string text;  // literal text, or the capture name
        bool capture = false;
    };
    struct Route {
        std::string pattern;
        std::vector<Segment> segments;  // only for patterns with captures
        Handler handlers[kMethodCount];
        bool has[kMethodCount] = {};
        std::size_t id = 0;
    };

    std::vector<std::unique_ptr<Route>> routes;  // by insertion order
    // Transparent hashing: look paths up as string_view without a copy.
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, Route*, Hash, std::equal_to<>> exact;
    std::vector<Route*> captured;
    std::unordered_map<std::string, std::pair<UpgradeHandler, std::size_t>, Hash, std::equal_to<>>
        upgrades;
    Handler fallback;
    std::vector<std::string> names;  // route id -> name; [0] "unmatched", [1] "fallback"

    Impl() : names{"unmatched", "fallback"} {}

    Route* find_route(std::string_view path, KeyValues& params) const {
        if (auto it = exact.find(path); it != exact.end()) return it->second;
        for (Route* r : captured) {
            std::size_t n = 0;
            bool ok = true;
            std::size_t params_before = params.size();
            for_each_segment(path, [&](std::string_view seg) {
                if (n >= r->segments.size()) {
                    ok = false;
                    return false;
                }
                const Segment& s = r->segments[n++];
                if (s.capture) {
                    if (seg.empty()) {
                        ok = false;
                        return false;
                    }
                    params.emplace_back(s.text, std::string(seg));
                } else if (s.text != seg) {
                    ok = false;
                    return false;
                }
                return true;
            });
            if (ok && n == r->segments.size()) return r;
            params.resize(params_before);
        }
        return nullptr;
    }
};

Router::Router() : impl_(std::make_unique<Impl>()) {}
Router::~Router() = default;

void Router::add(Method method, std::string_view pattern, Handler handler) {
    if (pattern.empty() || pattern[0] != '/') {
        throw std::invalid_argument("route pattern must start with '/': " + std::string(pattern));
    }
    std::vector<Impl::Segment> segments;
    bool has_capture = false;
    for_each_segment(pattern, [&](std::string_view seg) {
        Impl::Segment s;
        if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
            s.capture = true;
            s.text = std::string(seg.substr(1, seg.size() - 2));
            has_capture = true;
        } else {
            s.text = std::string(seg);
        }
        segments.push_back(std::move(s));
        return true;
    });
    Impl::Route* route = nullptr;
    for (auto& r : impl_->routes) {
        if (r->pattern == pattern) route = r.get();
    }
    if (!route) {
        auto r = std::make_unique<Impl::Route>();
        r->pattern = std::string(pattern);
        r->id = impl_->names.size();
        impl_->names.push_back(r->pattern);
        route = r.get();
        if (has_capture) {
            r->segments = std::move(segments);
            impl_->captured.push_back(route);
        } else {
            impl_->exact.emplace(r->pattern, route);
        }
        impl_->routes.push_back(std::move(r));
    }
    std::size_t m = method_index(method);
    if (route->has[m]) {
        throw std::invalid_argument("duplicate route: " + std::string(pattern));
    }
    route->has[m] = true;
    route->handlers[m] = std::move(handler);
}

void Router::add_upgrade(std::string_view path, UpgradeHandler handler) {
    std::size_t id = impl_->names.size();
    auto [it, inserted] =
        impl_->upgrades.emplace(std::string(path), std::make_pair(std::move(handler), id));
    if (!inserted) throw std::invalid_argument("duplicate upgrade route: " + std::string(path));
    impl_->names.emplace_back(path);
}

void Router::set_fallback(Handler handler) { impl_->fallback = std::move(handler); }

Router::Match Router::match(Method method, std::string_view path, KeyValues& params) const {
    Match m;
    const Impl::Route* r = impl_->find_route(path, params);
    if (!r) {
        if (impl_->fallback) {
            m.kind = Match::Kind::handler;
            m.handler = &impl_->fallback;
            m.route = impl_->names[1];
            m.route_id = 1;
        }
        return m;
    }
    m.route = r->pattern;
    m.route_id = r->id;
    std::size_t i = method_index(method == Method::head ? Method::get : method);
    if (method == Method::head && !r->has[i]) i = method_index(Method::head);
    if (r->has[i]) {
        m.kind = Match::Kind::handler;
        m.handler = &r->handlers[i];
    } else {
        m.kind = Match::Kind::method_not_allowed;
    }
    return m;
}

const UpgradeHandler* Router::find_upgrade(std::string_view path) const {
    if (impl_->upgrades.empty()) return nullptr;
    auto it = impl_->upgrades.find(path);
    return it == impl_->upgrades.end() ? nullptr : &it->second.first;
}

std::size_t Router::upgrade_route_id(std::string_view path) const {
    auto it = impl_->upgrades.find(path);
    return it == impl_->upgrades.end() ? 0 : it->second.second;
}

std::size_t Router::route_count() const { return impl_->names.size(); }

std::string_view Router::route_name(std::size_t route_id) const {
    return route_id < impl_->names.size() ? std::string_view(impl_->names[route_id])
                                          : std::string_view("unmatched");
}

std::string percent_decode(std::string_view in, bool plus_as_space) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%' && i + 2 < in.size()) {
            int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(plus_as_space && c == '+' ? ' ' : c);
    }
    return out;
}

void parse_query(std::string_view query, KeyValues& out) {
    std::size_t i = 0;
    while (i <= query.size()) {
        std::size_t j = query.find('&', i);
        if (j == std::string_view::npos) j = query.size();
        std::string_view part = query.substr(i, j - i);
        if (!part.empty()) {
            std::size_t eq = part.find('=');
            std::string_view k = part.substr(0, eq);
            std::string_view v = eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
            if (!k.empty()) out.emplace_back(percent_decode(k, true), percent_decode(v, true));
        }
        if (j == query.size()) break;
        i = j + 1;
    }
}

Method method_from_string(std::string_view name) {
    if (name == "GET") return Method::get;
    if (name == "POST") return Method::post;
    if (name == "HEAD") return Method::head;
    if (name == "PUT") return Method::put;
    if (name == "DELETE") return Method::delete_;
    if (name == "PATCH") return Method::patch;
    if (name == "OPTIONS") return Method::options;
    return Method::other;
}

}  // namespace nk::net
