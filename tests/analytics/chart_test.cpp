// The analytics chart page in headless Chromium against the real server: the script runs, fetches
// the stats with the key from the page's address and writes the headline figures into the DOM.
// A screenshot of the rendered page is kept in <build>/artifacts/analytics_chart.png.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "analytics_server.hpp"
#include "security_support.hpp"
#include "support/wait.hpp"

extern char** environ;

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kHttpKey = "defaulthttpkey";
constexpr int kEvents = 7;

struct BrowserRun {
    int exit_code = -1;  // -1 when it had to be killed
    std::string dom;     // stdout (--dump-dom)
    std::string log;     // stderr
};

// Runs headless Chromium once with a fresh profile (and HOME) in a temp dir, in its own process
// group so a hung browser and its helpers can all be killed.
BrowserRun chromium(const std::vector<std::string>& extra, std::chrono::seconds limit = 90s) {
    TempDir dir;
    std::vector<std::string> args = {NK_CHROMIUM,
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--no-first-run",
                                     "--enable-logging=stderr",  // the page's console too
                                     "--user-data-dir=" + (dir / "profile").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e)
        if (std::strncmp(*e, "HOME=", 5) != 0)
            env_storage.emplace_back(*e);
    env_storage.push_back("HOME=" + dir.path().string());
    std::vector<char*> envp;
    for (auto& e : env_storage)
        envp.push_back(e.data());
    envp.push_back(nullptr);

    const fs::path out = dir / "stdout", err = dir / "stderr";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    REQUIRE_MESSAGE(rc == 0, "cannot start " << args[0] << ": " << std::strerror(rc));

    BrowserRun r;
    int status = 0;
    const bool exited = wait_until(
        [&] { return ::waitpid(pid, &status, WNOHANG) == pid; },
        std::chrono::duration_cast<std::chrono::milliseconds>(limit));
    if (exited) {
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    } else {
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
    }
    ::kill(-pid, SIGKILL);  // helpers left behind, if any
    r.dom = read_file(out);
    // Its log, less the noise of a machine without D-Bus.
    std::istringstream lines(read_file(err));
    for (std::string line; std::getline(lines, line);)
        if (line.find("dbus") == std::string::npos)
            r.log += line + "\n";
    return r;
}

std::vector<std::string> page_run(const std::string& url) {
    // Virtual time: the page's timers run as fast as possible, network waits pause the clock.
    return {"--virtual-time-budget=5000", "--dump-dom", url};
}

// The text of the element with this id, up to its first child tag; "" when absent.
std::string text_of(const std::string& dom, const std::string& id) {
    const std::string open = "id=\"" + id + "\"";
    auto at = dom.find(open);
    if (at == std::string::npos)
        return "";
    at = dom.find('>', at);
    if (at == std::string::npos)
        return "";
    return dom.substr(at + 1, dom.find('<', at) - at - 1);
}

// The opening tag of the element with this id; "" when absent.
std::string tag_of(const std::string& dom, const std::string& id) {
    const auto at = dom.find("id=\"" + id + "\"");
    if (at == std::string::npos)
        return "";
    const auto start = dom.rfind('<', at);
    return dom.substr(start, dom.find('>', at) - start + 1);
}

std::string page_url(const Nkhost& host, const std::string& key) {
    return "http://127.0.0.1:" + std::to_string(host.port()) + "/plugins/analytics?http_key=" + key;
}

}  // namespace

TEST_CASE("the chart page in headless Chromium shows the live event count") {
    Server s;
    const std::string token = s.host->device_token("analytics-chart-probe1");
    for (int i = 0; i < kEvents; ++i) {
        auto c = s.host->client();
        c->set_bearer_token_auth(token.c_str());
        auto res = c->Post("/v2/event", "{\"name\":\"chart_probe\",\"properties\":{}}",
                           "application/json");
        REQUIRE(res);
        REQUIRE(res->status == 200);
    }
    const std::string total = "\"total\":" + std::to_string(kEvents);
    REQUIRE(wait_until([&] {
        auto res = s.host->client()->Get(std::string("/v2/rpc/analytics_stats?unwrap&http_key=") +
                                         kHttpKey);
        return res && res->status == 200 &&
               res->body.find("\"events\":{" + total) != std::string::npos;
    }));

    // The served page carries no secret, whatever its address holds.
    auto raw = s.host->client()->Get(std::string("/plugins/analytics?http_key=") + kHttpKey);
    REQUIRE(raw);
    REQUIRE(raw->status == 200);
    CHECK(raw->body.find(kHttpKey) == std::string::npos);
    // Before the script runs, the figures are placeholders.
    CHECK(text_of(raw->body, "events-total") == "–");

    {  // the script fetched the stats and wrote the figures
        const BrowserRun r = chromium(page_run(page_url(*s.host, kHttpKey)));
        INFO("chromium stderr:\n" << r.log);
        REQUIRE(r.exit_code == 0);
        INFO("dumped DOM:\n" << r.dom);
        REQUIRE(r.dom.find("id=\"events-total\"") != std::string::npos);
        CHECK(text_of(r.dom, "events-total") == std::to_string(kEvents));
        CHECK(text_of(r.dom, "events-hour") == std::to_string(kEvents));
        CHECK(text_of(r.dom, "dau-today") == "1");
        const std::string status = text_of(r.dom, "status");
        CHECK(status.rfind("Updated ", 0) == 0);
        CHECK(status.find("charts unavailable") == std::string::npos);
        // Chart.js took over the canvases (it sizes them with an inline style).
        CHECK(tag_of(r.dom, "rate").find("style=") != std::string::npos);
        CHECK(tag_of(r.dom, "top").find("style=") != std::string::npos);
        // The key is in the address only, never in the document.
        CHECK(r.dom.find(kHttpKey) == std::string::npos);
    }

    {  // a wrong key: the page says so and shows no figures
        const BrowserRun r = chromium(page_run(page_url(*s.host, "not-the-key")));
        INFO("chromium stderr:\n" << r.log);
        REQUIRE(r.exit_code == 0);
        INFO("dumped DOM:\n" << r.dom);
        CHECK(text_of(r.dom, "events-total") == "–");
        CHECK(text_of(r.dom, "status").find("Could not load the figures: wrong or missing") == 0);
    }

    {  // a screenshot of the rendered page is kept as an artifact
        const fs::path png = build_dir() / "artifacts" / "analytics_chart.png";
        fs::create_directories(png.parent_path());
        fs::remove(png);
        const BrowserRun r = chromium({"--virtual-time-budget=5000", "--hide-scrollbars",
                                       "--window-size=1280,900", "--screenshot=" + png.string(),
                                       page_url(*s.host, kHttpKey)});
        INFO("chromium stderr:\n" << r.log);
        REQUIRE(r.exit_code == 0);
        REQUIRE(fs::exists(png));
        const std::string bytes = read_file(png);
        CHECK(bytes.rfind("\x89PNG\r\n\x1a\n", 0) == 0);
        CHECK(bytes.size() > 8 * 1024);
        MESSAGE("screenshot: " << png.string() << " (" << bytes.size() << " bytes)");
    }
}
