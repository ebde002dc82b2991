//! Deterministic sample residents for every sample dataset.
//!
//! The same seed gives the same people on every machine and every version
//! (the generator is a SplitMix64 of our own, not a library whose stream may
//! change). People are consistent across datasets: the same resident appears
//! in 户籍, 社保, 婚姻 and 不动产; households share a `household_id`; spouses
//! point at each other; birth dates and genders agree with the ID numbers.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::domain::ResidentId;
use crate::pipeline::minimize::Record;

/// The seed used by `tongban demo` and the tests.
pub const DEMO_SEED: u64 = 0x7017_ba17;

/// Records per dataset id, each list in generation order.
#[derive(Debug, Default)]
pub struct SampleData {
    /// `dataset id → [(resident, record)]`.
    pub datasets: BTreeMap<String, Vec<(ResidentId, Record)>>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = u64::try_from(hi - lo + 1).unwrap_or(1).max(1);
        lo + i64::try_from(self.next() % span).unwrap_or(0)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        &items[i]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const AREAS: &[(&str, &str, &str)] = &[
    ("110101", "北京市东城区", "京"),
    ("110102", "北京市西城区", "京"),
    ("110105", "北京市朝阳区", "京"),
    ("310101", "上海市黄浦区", "沪"),
    ("310104", "上海市徐汇区", "沪"),
    ("440106", "广东省广州市天河区", "粤"),
    ("440305", "广东省深圳市南山区", "粤"),
    ("330106", "浙江省杭州市西湖区", "浙"),
    ("320102", "江苏省南京市玄武区", "苏"),
    ("420106", "湖北省武汉市武昌区", "鄂"),
    ("510107", "四川省成都市武侯区", "川"),
    ("610113", "陕西省西安市雁塔区", "陕"),
];

const STREETS: &[&str] = &[
    "建国路",
    "解放路",
    "人民路",
    "中山路",
    "和平街",
    "文化路",
    "新华街",
    "光明路",
    "幸福路",
    "朝阳路",
    "青年路",
    "胜利街",
    "团结路",
    "育才路",
    "友谊路",
];

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁", "任",
    "沈", "姚", "卢", "姜", "崔", "钟", "谭", "陆", "汪", "范", "金", "石", "欧阳", "司马", "上官",
];

const MALE_CHARS: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "斌", "辉", "鹏", "华", "飞", "刚",
    "健", "波", "宇", "浩", "建国", "志强", "海", "平", "文", "俊", "峰", "晨", "博", "毅",
];

const FEMALE_CHARS: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀英", "玲", "婷", "雪", "慧", "颖", "琳",
    "晶", "欣", "倩", "洁", "红", "梅", "燕", "萍", "薇", "瑶", "佳", "悦", "思", "雨", "月",
];

const ETHNICITIES: &[&str] = &[
    "回族",
    "满族",
    "壮族",
    "蒙古族",
    "苗族",
    "土家族",
    "藏族",
    "维吾尔族",
];

const QUALIFICATIONS: &[(&str, &str)] = &[
    ("教师资格证（初级中学）", "—"),
    ("教师资格证（小学）", "—"),
    ("会计专业技术资格", "中级"),
    ("执业药师职业资格", "—"),
    ("电工", "高级工（三级）"),
    ("中式烹调师", "中级工（四级）"),
    ("育婴员", "五级"),
    ("社会工作者职业资格", "助理社会工作师"),
];

const EMPLOYERS: &[&str] = &[
    "市第一人民医院",
    "华联商贸有限公司",
    "长江建设集团有限公司",
    "市实验中学",
    "新兴科技股份有限公司",
    "国泰物流有限公司",
    "市自来水公司",
    "东方机械制造厂",
    "惠民超市连锁有限公司",
    "市公共交通集团",
    "明德律师事务所",
    "恒信会计师事务所",
    "区人民政府办公室",
    "丰收农业合作社",
    "星辰软件有限公司",
];

struct Person {
    id: ResidentId,
    name: String,
    male: bool,
    birth_year: i64,
    relation: &'static str,
    spouse: Option<usize>,
    hukou_status: &'static str,
    ethnicity: &'static str,
    phone: String,
}

struct Household {
    area: usize,
    id: String,
    address: String,
    members: Vec<usize>,
    dibao: bool,
}

/// Generates about `residents` people (whole households, so a few more) from `seed`.
pub fn generate(residents: usize, seed: u64) -> SampleData {
    let mut rng = Rng(seed);
    let mut people: Vec<Person> = Vec::with_capacity(residents + 8);
    let mut households: Vec<Household> = Vec::new();
    let mut used: HashSet<String> = HashSet::new();

    while people.len() < residents {
        let household = household(&mut rng, &mut people, &mut used, households.len() + 1);
        households.push(household);
    }

    let mut data = SampleData::default();
    for hh in &households {
        for &p in &hh.members {
            add_records(&mut rng, &mut data, &people, hh, p);
        }
    }
    data
}

/// One household, number `hh_no`: a head, often a spouse and children,
/// sometimes a parent, all registered at one address.
fn household(
    rng: &mut Rng,
    people: &mut Vec<Person>,
    used: &mut HashSet<String>,
    hh_no: usize,
) -> Household {
    let area = usize::try_from(rng.next() % AREAS.len() as u64).unwrap_or(0);
    let (code, place, _) = AREAS[area];
    let address = format!(
        "{place}{}{}号{}栋{}单元{}室",
        rng.pick(STREETS),
        rng.range(1, 300),
        rng.range(1, 30),
        rng.range(1, 6),
        rng.range(101, 2802)
    );
    let mut household = Household {
        area,
        id: format!("{code}{hh_no:08}"),
        address,
        members: Vec::new(),
        dibao: rng.chance(5),
    };
    let surname = (*rng.pick(SURNAMES)).to_owned();
    let head_male = rng.chance(70);
    let head_year = rng.range(1945, 1998);
    let head = add_person(
        rng, people, used, code, &surname, head_male, head_year, "户主",
    );
    household.members.push(head);

    if head_year < 1998 && rng.chance(70) {
        let spouse_surname = (*rng.pick(SURNAMES)).to_owned();
        let year = (head_year + rng.range(-5, 5)).min(2000);
        let spouse = add_person(
            rng,
            people,
            used,
            code,
            &spouse_surname,
            !head_male,
            year,
            "配偶",
        );
        people[head].spouse = Some(spouse);
        people[spouse].spouse = Some(head);
        household.members.push(spouse);
        for _ in 0..rng.range(0, 3) {
            let year = head_year + rng.range(22, 36);
            if year > 2024 {
                break;
            }
            let male = rng.chance(50);
            let child = add_person(
                rng,
                people,
                used,
                code,
                &surname,
                male,
                year,
                if male { "子" } else { "女" },
            );
            household.members.push(child);
        }
    }
    if head_year > 1965 && rng.chance(15) {
        let male = rng.chance(50);
        let year = head_year - rng.range(24, 32);
        let parent_surname = if male {
            surname.clone()
        } else {
            (*rng.pick(SURNAMES)).to_owned()
        };
        let parent = add_person(
            rng,
            people,
            used,
            code,
            &parent_surname,
            male,
            year,
            if male { "父亲" } else { "母亲" },
        );
        household.members.push(parent);
    }
    household
}

#[allow(clippy::too_many_arguments)]
fn add_person(
    rng: &mut Rng,
    people: &mut Vec<Person>,
    used: &mut HashSet<String>,
    area_code: &str,
    surname: &str,
    male: bool,
    birth_year: i64,
    relation: &'static str,
) -> usize {
    let given = if male {
        rng.pick(MALE_CHARS)
    } else {
        rng.pick(FEMALE_CHARS)
    };
    let id = loop {
        let month = rng.range(1, 12);
        let day = rng.range(1, 28);
        let mut seq = rng.range(0, 999);
        if (seq % 2 == 1) != male {
            seq = (seq + 1) % 1000;
        }
        let body = format!("{area_code}{birth_year:04}{month:02}{day:02}{seq:03}");
        if used.contains(&body) {
            continue;
        }
        if let Ok(id) = ResidentId::from_body(&body) {
            used.insert(body);
            break id;
        }
    };
    let old = birth_year < 1950;
    let hukou_status = if old && rng.chance(20) {
        "死亡注销"
    } else if rng.chance(3) {
        "迁出"
    } else {
        "正常"
    };
    let ethnicity = if rng.chance(90) {
        "汉族"
    } else {
        rng.pick(ETHNICITIES)
    };
    let prefixes = [
        "138", "139", "135", "136", "150", "151", "186", "187", "177", "199",
    ];
    let phone = format!("{}{:08}", rng.pick(&prefixes), rng.range(0, 99_999_999));
    people.push(Person {
        id,
        name: format!("{surname}{given}"),
        male,
        birth_year,
        relation,
        spouse: None,
        hukou_status,
        ethnicity,
        phone,
    });
    people.len() - 1
}

fn date(year: i64, rng: &mut Rng) -> String {
    format!("{year:04}-{:02}-{:02}", rng.range(1, 12), rng.range(1, 28))
}

/// A professional qualification certificate (职业资格证书) for about three
/// adults in ten, from a generator of its own (seeded by the person's ID),
/// so that every other dataset stays as it was.
fn qualification(person: &Person) -> Option<Value> {
    let seed = person
        .id
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let mut own = Rng(seed);
    if !own.chance(30) {
        return None;
    }
    let (name, level) = *own.pick(QUALIFICATIONS);
    let year = (person.birth_year + own.range(22, 40)).min(2025);
    Some(json!({
        "certificate_name": name,
        "certificate_level": level,
        "issued_on": date(year, &mut own),
        "certificate_no": format!("{year}{:010}", own.range(1, 9_999_999_999)),
    }))
}

fn add_records(rng: &mut Rng, data: &mut SampleData, people: &[Person], hh: &Household, p: usize) {
    let person = &people[p];
    let (_, place, province_abbr) = AREAS[hh.area];
    let district = place.rsplit('市').next().unwrap_or(place);
    let age = 2026 - person.birth_year;
    let alive = person.hukou_status != "死亡注销";
    let mut push = |dataset: &str, record: Value| {
        if let Value::Object(map) = record {
            data.datasets
                .entry(dataset.to_owned())
                .or_default()
                .push((person.id.clone(), map));
        }
    };

    let birth = person.id.birth_date();
    push(
        "gongan.hukou",
        json!({
            "id_number": person.id.as_str(),
            "name": person.name,
            "gender": if person.male { "男" } else { "女" },
            "ethnicity": person.ethnicity,
            "birth_date": format!("{:04}-{:02}-{:02}", birth.year(), u8::from(birth.month()), birth.day()),
            "hukou_address": hh.address,
            "household_id": hh.id,
            "relation_to_head": person.relation,
            "hukou_status": person.hukou_status,
            "phone": person.phone,
        }),
    );

    if age >= 16 {
        let retired = age >= 60;
        let employed = !retired && age >= 18 && rng.chance(75);
        let start_year = (person.birth_year + rng.range(18, 30)).min(2025);
        let mut record = json!({
            "insurance_types": if employed {
                json!(["职工基本养老保险", "职工基本医疗保险", "失业保险", "工伤保险"])
            } else {
                json!(["城乡居民基本养老保险", "城乡居民基本医疗保险"])
            },
            "insured_status": if !alive { "终止参保" } else if retired { "待遇领取" } else if employed { "参保缴费" } else { "暂停缴费" },
            "start_date": date(start_year, rng),
        });
        if let Value::Object(map) = &mut record {
            if employed {
                map.insert("employer".into(), json!(rng.pick(EMPLOYERS)));
                map.insert("contribution_base".into(), json!(rng.range(30, 250) * 100));
            }
            if retired && alive {
                map.insert("monthly_pension".into(), json!(rng.range(150, 700) * 10));
            }
        }
        push("renshe.shebao", record);
    }

    if age >= 20 {
        let office = format!("{district}民政局婚姻登记处");
        let record = match person.spouse {
            Some(s) => json!({
                "marital_status": "已婚",
                "registration_date": date(person.birth_year.max(people[s].birth_year) + 24, rng),
                "registry_office": office,
                "spouse_id_number": people[s].id.as_str(),
            }),
            None if age > 40 && rng.chance(40) => json!({
                "marital_status": if rng.chance(50) { "离婚" } else { "丧偶" },
                "registration_date": date(person.birth_year + 45, rng),
                "registry_office": office,
            }),
            None => json!({"marital_status": "未婚"}),
        };
        push("minzheng.hunyin", record);

        let count = if hh.dibao { 0 } else { rng.range(0, 3) };
        let properties: Vec<Value> = (0..count)
            .map(|_| {
                let year = rng.range(2000, 2025);
                json!({
                    "certificate_no": format!("{province_abbr}({year}){district}不动产权第{:07}号", rng.range(1, 9_999_999)),
                    "address": format!("{place}{}{}号{}栋{}室", rng.pick(STREETS), rng.range(1, 300), rng.range(1, 30), rng.range(101, 2802)),
                    "area_m2": f64::from(u32::try_from(rng.range(3000, 18000)).unwrap_or(5000)) / 100.0,
                })
            })
            .collect();
        push(
            "ziranziyuan.budongchan",
            json!({"property_count": count, "properties": properties}),
        );
    }

    if let Some(record) = qualification(person).filter(|_| age >= 22 && alive) {
        push("renshe.zhiye_zige", record);
    }

    if hh.dibao {
        push(
            "minzheng.dibao",
            json!({
                "household_id": hh.id,
                "benefit_status": "在保",
                "monthly_amount": rng.range(60, 130) * 10,
                "start_date": date(rng.range(2018, 2025), rng),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_people() {
        let a = generate(200, DEMO_SEED);
        let b = generate(200, DEMO_SEED);
        assert_eq!(a.datasets["gongan.hukou"], b.datasets["gongan.hukou"]);
        assert!(a.datasets["gongan.hukou"].len() >= 200);
    }

    #[test]
    fn spouses_point_at_each_other_and_ids_agree_with_records() {
        let data = generate(300, DEMO_SEED);
        let hunyin: BTreeMap<_, _> = data.datasets["minzheng.hunyin"].iter().cloned().collect();
        let mut couples = 0;
        for (id, rec) in &hunyin {
            if let Some(spouse) = rec.get("spouse_id_number").and_then(Value::as_str) {
                let spouse = ResidentId::parse(spouse).unwrap();
                assert_eq!(hunyin[&spouse]["spouse_id_number"], id.as_str());
                couples += 1;
            }
        }
        assert!(couples > 10);
        for (id, rec) in &data.datasets["gongan.hukou"] {
            assert_eq!(rec["gender"] == "男", id.is_male());
            assert!(
                rec["birth_date"]
                    .as_str()
                    .unwrap()
                    .starts_with(&id.birth_date().year().to_string())
            );
        }
    }
}
