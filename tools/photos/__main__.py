from tools.photos.cli import main

main()
