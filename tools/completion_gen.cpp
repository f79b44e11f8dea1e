#include "completion_gen.hpp"

#include <sstream>
#include <stdexcept>

namespace rproxy::cli {

namespace {

// "{a,b,header:NAME}" (CLI::IsMember, values_hint) gives a, b and header: (NAME is the user's to type).
std::vector<std::string> set_words(const std::string& desc) {
  std::vector<std::string> words;
  std::string inner = desc.substr(1, desc.size() - 2);
  std::stringstream ss(inner);
  for (std::string item; std::getline(ss, item, ',');) {
    if (auto colon = item.find(':'); colon != std::string::npos) item = item.substr(0, colon + 1);
    if (!item.empty()) words.push_back(item);
  }
  return words;
}

CompletionOption describe_option(const CLI::Option& opt) {
  CompletionOption out;
  for (const auto& n : opt.get_snames()) out.names.push_back("-" + n);
  for (const auto& n : opt.get_lnames()) out.names.push_back("--" + n);
  out.description = opt.get_description();
  if (opt.get_expected_max() == 0) return out;  // a flag (add_flag sets expected(0))
  out.kind = ValueKind::kText;
  // The full type name is "TYPE:validator:validator"; the validators' descriptions say what they accept.
  const std::string full = opt.get_type_name();
  const std::string type = full.substr(0, full.find(':'));
  std::vector<std::string> parts;
  std::stringstream ss(full.substr(type.size()));
  for (std::string part; std::getline(ss, part, ':');) parts.push_back(part);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    // A set may itself contain ':' (header:NAME): glue its pieces back together up to the '}'.
    if (!parts[i].empty() && parts[i].front() == '{') {
      std::string set = parts[i];
      while (set.back() != '}' && i + 1 < parts.size()) set += ":" + parts[++i];
      out.kind = ValueKind::kWords;
      out.words = set_words(set);
      return out;
    }
    if (parts[i] == "FILE" || parts[i] == "PATH(existing)") out.kind = ValueKind::kFiles;
    if (parts[i] == "DIR") out.kind = ValueKind::kDirs;
  }
  if (out.kind == ValueKind::kText) {
    if (type.find("DIR") != std::string::npos && type.find("FILE") == std::string::npos)
      out.kind = ValueKind::kDirs;
    else if (type.find("FILE") != std::string::npos || type.find("PATH") != std::string::npos)
      out.kind = ValueKind::kFiles;
  }
  // Positionals are paths unless they name their values: recordings, cassettes, HAR and scenario files.
  if (!opt.nonpositional() && out.kind == ValueKind::kText) out.kind = ValueKind::kFiles;
  return out;
}

void walk(const CLI::App& app, const std::string& path, std::vector<CompletionCommand>& out) {
  CompletionCommand cmd;
  cmd.path = path;
  cmd.description = app.get_description();
  auto subs = app.get_subcommands([](const CLI::App*) { return true; });
  for (const auto* sub : subs) cmd.subcommands.emplace_back(sub->get_name(), sub->get_description());
  for (const auto* opt : app.get_options()) {
    if (opt->nonpositional())
      cmd.options.push_back(describe_option(*opt));
    else if (cmd.positional.kind == ValueKind::kNone)
      cmd.positional = describe_option(*opt);
  }
  out.push_back(std::move(cmd));
  for (const auto* sub : subs) walk(*sub, path + " " + sub->get_name(), out);
}

// Quotes text for a single-quoted sh/bash/zsh word.
std::string sq(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Quotes text for a single-quoted fish word (fish escapes \ and ' inside single quotes).
std::string fish_sq(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string join(const std::vector<std::string>& items, const std::string& sep = " ") {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::vector<std::string> value_option_names(const CompletionCommand& c) {
  std::vector<std::string> names;
  for (const auto& o : c.options)
    if (o.kind != ValueKind::kNone) names.insert(names.end(), o.names.begin(), o.names.end());
  return names;
}

std::vector<std::string> all_option_names(const CompletionCommand& c) {
  std::vector<std::string> names;
  for (const auto& o : c.options) names.insert(names.end(), o.names.begin(), o.names.end());
  return names;
}

std::vector<std::string> sub_names(const CompletionCommand& c) {
  std::vector<std::string> names;
  for (const auto& [name, desc] : c.subcommands) names.push_back(name);
  return names;
}

// The case arms "PATH|OPTION" of a value completion, shared by bash and zsh (same case syntax).
std::string value_arms(const std::vector<CompletionCommand>& model, const std::string& files,
                       const std::string& dirs, const std::string& words_fn) {
  std::string out;
  auto arm = [&](const std::string& key, const CompletionOption& o) {
    std::string action;
    if (o.kind == ValueKind::kFiles) action = files;
    if (o.kind == ValueKind::kDirs) action = dirs;
    if (o.kind == ValueKind::kWords) action = words_fn + " " + join(o.words);
    if (!action.empty()) out += "    " + sq(key) + ") " + action + " ;;\n";
  };
  for (const auto& c : model) {
    for (const auto& o : c.options)
      for (const auto& n : o.names) arm(c.path + "|" + n, o);
    arm(c.path + "|", c.positional);
  }
  return out;
}

std::string bash_script(const std::vector<CompletionCommand>& model) {
  std::string s =
      "# bash completion for rproxy. Generated by `rproxy completion bash`: do not edit, regenerate.\n"
      "\n"
      "_rproxy_subcommands() {\n"
      "  case $1 in\n";
  for (const auto& c : model)
    if (!c.subcommands.empty()) s += "    " + sq(c.path) + ") echo " + sq(join(sub_names(c))) + " ;;\n";
  s += "  esac\n}\n\n_rproxy_options() {\n  case $1 in\n";
  for (const auto& c : model) s += "    " + sq(c.path) + ") echo " + sq(join(all_option_names(c))) + " ;;\n";
  s += "  esac\n}\n\n# Options that take a value: the next word is their value, not a subcommand.\n";
  s += "_rproxy_value_options() {\n  case $1 in\n";
  for (const auto& c : model) {
    auto names = value_option_names(c);
    if (!names.empty()) s += "    " + sq(c.path) + ") echo " + sq(join(names)) + " ;;\n";
  }
  s += "  esac\n}\n\n";
  s += "_rproxy_words() {\n"
       "  local IFS=$' \\t\\n'\n"
       "  COMPREPLY=($(compgen -W \"$*\" -- \"$cur\"))\n"
       "}\n"
       "\n"
       "_rproxy_files() {\n"
       "  compopt -o filenames 2>/dev/null\n"
       "  local IFS=$'\\n'\n"
       "  COMPREPLY=($(compgen -f -- \"$cur\"))\n"
       "}\n"
       "\n"
       "_rproxy_dirs() {\n"
       "  compopt -o filenames 2>/dev/null\n"
       "  local IFS=$'\\n'\n"
       "  COMPREPLY=($(compgen -d -- \"$cur\"))\n"
       "}\n"
       "\n"
       "# _rproxy_values PATH OPTION completes OPTION's value; OPTION empty: the positional argument.\n"
       "_rproxy_values() {\n"
       "  case \"$1|$2\" in\n";
  s += value_arms(model, "_rproxy_files", "_rproxy_dirs", "_rproxy_words");
  s += "  esac\n"
       "}\n"
       "\n"
       "_rproxy() {\n"
       "  local cur prev cmd=rproxy i w\n"
       "  COMPREPLY=()\n"
       "  cur=${COMP_WORDS[COMP_CWORD]}\n"
       "  prev=\n"
       "  ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}\n"
       "  # Readline splits --flag=value at '=' into three words.\n"
       "  if [[ $cur == = ]]; then\n"
       "    cur=\n"
       "  elif [[ $prev == = ]] && ((COMP_CWORD > 1)); then\n"
       "    prev=${COMP_WORDS[COMP_CWORD - 2]}\n"
       "  fi\n"
       "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
       "    w=${COMP_WORDS[i]}\n"
       "    if [[ $w == -* ]]; then\n"
       "      if [[ ${COMP_WORDS[i + 1]} == = ]]; then\n"
       "        ((i += 2))\n"
       "      elif [[ $w != *=* && \" $(_rproxy_value_options \"$cmd\") \" == *\" $w \"* ]]; then\n"
       "        ((i++))\n"
       "      fi\n"
       "    elif [[ \" $(_rproxy_subcommands \"$cmd\") \" == *\" $w \"* ]]; then\n"
       "      cmd=\"$cmd $w\"\n"
       "    fi\n"
       "  done\n"
       "  if [[ $prev == -* && \" $(_rproxy_value_options \"$cmd\") \" == *\" $prev \"* ]]; then\n"
       "    _rproxy_values \"$cmd\" \"$prev\"\n"
       "    return 0\n"
       "  fi\n"
       "  if [[ $cur == -* ]]; then\n"
       "    _rproxy_words $(_rproxy_options \"$cmd\")\n"
       "    return 0\n"
       "  fi\n"
       "  local subs\n"
       "  subs=$(_rproxy_subcommands \"$cmd\")\n"
       "  if [[ -n $subs ]]; then\n"
       "    _rproxy_words $subs\n"
       "    return 0\n"
       "  fi\n"
       "  _rproxy_values \"$cmd\" \"\"\n"
       "  return 0\n"
       "}\n"
       "\n"
       "complete -F _rproxy rproxy\n";
  return s;
}

// "name:description" for zsh's _describe (a ':' in the name is escaped).
std::string described(const std::string& name, const std::string& desc) {
  std::string n;
  for (char c : name) n += c == ':' ? std::string("\\:") : std::string(1, c);
  return sq(n + ":" + desc);
}

std::string zsh_script(const std::vector<CompletionCommand>& model) {
  std::string s =
      "#compdef rproxy\n"
      "# zsh completion for rproxy. Generated by `rproxy completion zsh`: do not edit, regenerate.\n"
      "\n"
      "_rproxy_subcommands() {\n"
      "  case $1 in\n";
  for (const auto& c : model) {
    if (c.subcommands.empty()) continue;
    s += "    (" + sq(c.path) + ") reply=(";
    for (const auto& [name, desc] : c.subcommands) s += "\n      " + described(name, desc);
    s += "\n    ) ;;\n";
  }
  s += "    (*) reply=() ;;\n  esac\n}\n\n_rproxy_options() {\n  case $1 in\n";
  for (const auto& c : model) {
    s += "    (" + sq(c.path) + ") reply=(";
    for (const auto& o : c.options)
      for (const auto& n : o.names) s += "\n      " + described(n, o.description);
    s += "\n    ) ;;\n";
  }
  s += "    (*) reply=() ;;\n  esac\n}\n\n# Options that take a value: the next word is their value, not a "
       "subcommand.\n";
  s += "_rproxy_value_options() {\n  case $1 in\n";
  for (const auto& c : model) {
    auto names = value_option_names(c);
    if (!names.empty()) s += "    (" + sq(c.path) + ") reply=(" + join(names) + ") ;;\n";
  }
  s += "    (*) reply=() ;;\n  esac\n}\n\n";
  s += "# _rproxy_values PATH OPTION completes OPTION's value; OPTION empty: the positional argument.\n";
  s += "_rproxy_values() {\n  case \"$1|$2\" in\n";
  std::string arms = value_arms(model, "_files", "_files -/", "compadd --");
  // zsh's case arms take a leading '(' so the patterns read like bash's.
  std::stringstream in(arms);
  for (std::string line; std::getline(in, line);) s += "    (" + line.substr(4) + "\n";
  s += "    (*) return 1 ;;\n"
       "  esac\n"
       "}\n"
       "\n"
       "_rproxy() {\n"
       "  local cmd=rproxy i w cur=${words[CURRENT]} prev=${words[CURRENT-1]}\n"
       "  local -a reply names\n"
       "  for ((i = 2; i < CURRENT; i++)); do\n"
       "    w=${words[i]}\n"
       "    if [[ $w == -* ]]; then\n"
       "      _rproxy_value_options $cmd\n"
       "      if [[ $w != *=* ]] && (( ${reply[(Ie)$w]} )); then ((i++)); fi\n"
       "    else\n"
       "      _rproxy_subcommands $cmd\n"
       "      names=(${reply%%:*})\n"
       "      if (( ${names[(Ie)$w]} )); then cmd=\"$cmd $w\"; fi\n"
       "    fi\n"
       "  done\n"
       "  if [[ $cur == --*=* ]]; then\n"
       "    local flag=${cur%%=*}\n"
       "    compset -P '*='\n"
       "    _rproxy_values $cmd $flag\n"
       "    return\n"
       "  fi\n"
       "  _rproxy_value_options $cmd\n"
       "  if [[ $prev == -* ]] && (( ${reply[(Ie)$prev]} )); then\n"
       "    _rproxy_values $cmd $prev\n"
       "    return\n"
       "  fi\n"
       "  if [[ $cur == -* ]]; then\n"
       "    _rproxy_options $cmd\n"
       "    _describe -t options option reply\n"
       "    return\n"
       "  fi\n"
       "  _rproxy_subcommands $cmd\n"
       "  if (( $#reply )); then\n"
       "    _describe -t commands command reply\n"
       "    return\n"
       "  fi\n"
       "  _rproxy_values $cmd ''\n"
       "}\n"
       "\n"
       "if [[ $funcstack[1] == _rproxy ]]; then\n"
       "  _rproxy \"$@\"\n"
       "else\n"
       "  compdef _rproxy rproxy\n"
       "fi\n";
  return s;
}

std::string fish_script(const std::vector<CompletionCommand>& model) {
  std::string s =
      "# fish completion for rproxy. Generated by `rproxy completion fish`: do not edit, regenerate.\n"
      "\n"
      "function __rproxy_subcommands\n"
      "    switch $argv[1]\n";
  for (const auto& c : model)
    if (!c.subcommands.empty())
      s += "        case " + fish_sq(c.path) + "\n            printf '%s\\n' " + join(sub_names(c)) + "\n";
  s += "    end\nend\n\n# Options that take a value: the next word is their value, not a subcommand.\n";
  s += "function __rproxy_value_options\n    switch $argv[1]\n";
  for (const auto& c : model) {
    auto names = value_option_names(c);
    if (!names.empty())
      s += "        case " + fish_sq(c.path) + "\n            printf '%s\\n' " + join(names) + "\n";
  }
  s += "    end\n"
       "end\n"
       "\n"
       "# The subcommand path of the command line so far, e.g. \"rproxy har export\".\n"
       "function __rproxy_command\n"
       "    set -l tokens (commandline -opc)\n"
       "    set -e tokens[1]\n"
       "    set -l cmd rproxy\n"
       "    set -l skip 0\n"
       "    for w in $tokens\n"
       "        if test $skip = 1\n"
       "            set skip 0\n"
       "        else if string match -q -- '-*' $w\n"
       "            if not string match -q -- '*=*' $w; and contains -- $w (__rproxy_value_options $cmd)\n"
       "                set skip 1\n"
       "            end\n"
       "        else if contains -- $w (__rproxy_subcommands $cmd)\n"
       "            set cmd \"$cmd $w\"\n"
       "        end\n"
       "    end\n"
       "    echo $cmd\n"
       "end\n"
       "\n"
       "function __rproxy_at\n"
       "    test (__rproxy_command) = \"$argv[1]\"\n"
       "end\n"
       "\n"
       "complete -c rproxy -f\n";
  for (const auto& c : model) {
    const std::string at = "-n " + fish_sq("__rproxy_at " + sq(c.path));
    for (const auto& [name, desc] : c.subcommands)
      s += "complete -c rproxy " + at + " -a " + name + " -d " + fish_sq(desc) + "\n";
    for (const auto& o : c.options) {
      s += "complete -c rproxy " + at;
      for (const auto& n : o.names)
        s += (n.rfind("--", 0) == 0 ? " -l " + n.substr(2) : " -s " + n.substr(1));
      if (o.kind == ValueKind::kFiles || o.kind == ValueKind::kDirs) s += " -r -F";
      if (o.kind == ValueKind::kText) s += " -x";
      if (o.kind == ValueKind::kWords) s += " -x -a " + fish_sq(join(o.words));
      s += " -d " + fish_sq(o.description) + "\n";
    }
    if (c.positional.kind == ValueKind::kFiles || c.positional.kind == ValueKind::kDirs)
      s += "complete -c rproxy " + at + " -F\n";
    if (c.positional.kind == ValueKind::kWords)
      s += "complete -c rproxy " + at + " -a " + fish_sq(join(c.positional.words)) + "\n";
  }
  return s;
}

}  // namespace

std::vector<CompletionCommand> completion_model(const CLI::App& app) {
  std::vector<CompletionCommand> out;
  walk(app, app.get_name(), out);
  return out;
}

std::string completion_script(const CLI::App& app, const std::string& shell) {
  auto model = completion_model(app);
  if (shell == "bash") return bash_script(model);
  if (shell == "zsh") return zsh_script(model);
  if (shell == "fish") return fish_script(model);
  throw std::invalid_argument("no completion for shell " + shell + " (bash, zsh or fish)");
}

}  // namespace rproxy::cli
