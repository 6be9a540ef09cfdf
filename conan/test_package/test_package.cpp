// Reads a checkpoint when given one; otherwise proves the headers compile and link.
#include <statedict/statedict.hpp>

#include <iostream>

int main(int argc, char** argv) {
  std::cout << "statedict " << statedict::version_string << "\n";
#ifdef STATEDICT_SEPARATE_COMPILATION
  std::cout << "statedict::compiled\n";
#endif
  if (argc > 1) std::cout << statedict::read(argv[1]).tensors().size() << " tensors\n";
  return 0;
}
