"""Getting data in and out: importers (VOC, folders of images and masks), the generated demo,
seeded label noise for measuring, revised dataset versions and mask export."""
